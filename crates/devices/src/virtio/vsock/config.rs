//! The virtio-vsock configuration space (`struct virtio_vsock_config`, virtio 1.x 5.10.4) and
//! the features offered.
//!
//! The space is the guest's CID (le64), read-only. Stream sockets only: neither backend offers
//! `VIRTIO_VSOCK_F_SEQPACKET`; vhost-vsock gets the ring features its kernel has.

use crate::virtio::features::{bit, RING_EVENT_IDX, VERSION_1};

/// Feature bits of virtio-vsock (bit numbers), not offered.
pub mod feature {
    pub const STREAM: u32 = 0;
    pub const SEQPACKET: u32 = 1;
}

/// The userspace device's features: modern device, notification suppression.
pub fn offered_features() -> u64 {
    bit(VERSION_1) | bit(RING_EVENT_IDX)
}

/// The vhost-vsock device's: the ring features the host kernel serves.
pub fn vhost_offered_features(kernel: u64) -> u64 {
    bit(VERSION_1) | (kernel & crate::virtio::vhost::RING_FEATURES)
}

/// The configuration space.
pub fn config_space(guest_cid: u64) -> [u8; 8] {
    guest_cid.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_space_is_the_cid_and_no_socket_type_is_offered() {
        assert_eq!(config_space(3), [3, 0, 0, 0, 0, 0, 0, 0]);
        let f = offered_features();
        assert_eq!(f, (1 << 32) | (1 << 29));
        assert_eq!(f & (1 << feature::SEQPACKET), 0);
        assert_eq!(
            vhost_offered_features(u64::MAX),
            (1 << 32) | (1 << 29) | (1 << 28)
        );
        assert_eq!(vhost_offered_features(0), 1 << 32);
        assert_eq!(f & (1 << feature::STREAM), 0);
    }
}
