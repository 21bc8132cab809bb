//! The virtio-console configuration space (`struct virtio_console_config`, virtio 1.x 5.3.4)
//! and the feature bits this device offers.
//!
//! Only port 0 exists and none of the optional fields is offered: no `VIRTIO_CONSOLE_F_SIZE`
//! (the guest keeps its own idea of the terminal size), no `VIRTIO_CONSOLE_F_MULTIPORT` (one
//! port, so receiveq 0 and transmitq 1 are port 0's queues and there is no control queue), no
//! `VIRTIO_CONSOLE_F_EMERG_WRITE`. The fields then carry no meaning; they read as zero.

use crate::virtio::features::{bit, RING_EVENT_IDX, VERSION_1};

/// Feature bits of virtio-console (bit numbers), none of them offered.
pub mod feature {
    pub const SIZE: u32 = 0;
    pub const MULTIPORT: u32 = 1;
    pub const EMERG_WRITE: u32 = 2;
}

/// The features offered: modern device, notification suppression.
pub fn offered_features() -> u64 {
    bit(VERSION_1) | bit(RING_EVENT_IDX)
}

/// Length of the configuration space: `cols`, `rows` (u16), `max_nr_ports`, `emerg_wr` (u32).
pub const CONFIG_LEN: usize = 12;

/// The configuration space: all zero, as no field's feature is offered.
pub fn config_space() -> [u8; CONFIG_LEN] {
    [0; CONFIG_LEN]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_optional_feature_is_offered() {
        let f = offered_features();
        assert_ne!(f & (1 << 32), 0, "VERSION_1");
        assert_ne!(f & (1 << 29), 0, "EVENT_IDX");
        for b in [feature::SIZE, feature::MULTIPORT, feature::EMERG_WRITE] {
            assert_eq!(f & (1 << b), 0, "bit {b}");
        }
        assert_eq!(config_space(), [0; 12]);
    }
}
