//! The virtio-blk configuration space (`struct virtio_blk_config`, virtio 1.x 5.2.4) and the
//! feature bits this device offers.

use super::{MAX_DISCARD_SECTORS, QUEUE_SIZE, SECTOR_SIZE};
use crate::virtio::features::{bit, RING_EVENT_IDX, VERSION_1};

/// Feature bits of virtio-blk (bit numbers).
pub mod feature {
    pub const SEG_MAX: u32 = 2;
    pub const RO: u32 = 5;
    pub const BLK_SIZE: u32 = 6;
    pub const FLUSH: u32 = 9;
    pub const DISCARD: u32 = 13;
    pub const WRITE_ZEROES: u32 = 14;
}

/// The features offered for a disk that is read-only (or not) when the driver negotiates.
///
/// `BLK_F_RO` is fixed once negotiated: it follows the disk present at negotiation (boot or a
/// guest reset). A read-only disk hot-plugged into a slot negotiated read-write is not
/// announced as read-only; the guest's writes, discards and write-zeroes then fail with IOERR.
pub fn offered_features(read_only: bool) -> u64 {
    let common = bit(VERSION_1)
        | bit(RING_EVENT_IDX)
        | bit(feature::SEG_MAX)
        | bit(feature::BLK_SIZE)
        | bit(feature::FLUSH);
    if read_only {
        common | bit(feature::RO)
    } else {
        common | bit(feature::DISCARD) | bit(feature::WRITE_ZEROES)
    }
}

/// Length of the configuration space up to `write_zeroes_may_unmap` and its padding.
pub const CONFIG_LEN: usize = 60;

/// Largest number of data segments in a request: the queue minus header and status.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;

/// Discard granularity in sectors (4 KiB, the usual file system block).
const DISCARD_ALIGNMENT: u32 = 8;

/// The configuration space for a disk of `capacity` sectors.
pub fn config_space(capacity: u64) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    let mut put =
        |offset: usize, bytes: &[u8]| c[offset..offset + bytes.len()].copy_from_slice(bytes);
    put(0, &capacity.to_le_bytes());
    // 8: size_max (BLK_F_SIZE_MAX not offered)
    put(12, &SEG_MAX.to_le_bytes());
    // 16: geometry (not offered)
    put(20, &(SECTOR_SIZE as u32).to_le_bytes());
    // 24..32: topology (not offered), 32: writeback (no CONFIG_WCE)
    put(34, &1u16.to_le_bytes()); // num_queues
    put(36, &MAX_DISCARD_SECTORS.to_le_bytes());
    put(40, &1u32.to_le_bytes()); // max_discard_seg
    put(44, &DISCARD_ALIGNMENT.to_le_bytes());
    put(48, &MAX_DISCARD_SECTORS.to_le_bytes()); // max_write_zeroes_sectors
    put(52, &1u32.to_le_bytes()); // max_write_zeroes_seg
                                  // 56: write_zeroes_may_unmap = 0
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_spec() {
        let c = config_space(0x1_0000_0002);
        assert_eq!(&c[0..8], &0x1_0000_0002u64.to_le_bytes());
        assert_eq!(&c[12..16], &254u32.to_le_bytes());
        assert_eq!(&c[20..24], &512u32.to_le_bytes());
        assert_eq!(&c[40..44], &1u32.to_le_bytes());
        assert_eq!(c[56], 0);
    }

    #[test]
    fn read_only_offers_ro_and_no_discard() {
        let ro = offered_features(true);
        let rw = offered_features(false);
        assert_ne!(ro & (1 << feature::RO), 0);
        assert_eq!(ro & (1 << feature::DISCARD), 0);
        assert_eq!(rw & (1 << feature::RO), 0);
        assert_ne!(rw & (1 << feature::WRITE_ZEROES), 0);
        for f in [ro, rw] {
            assert_ne!(f & (1 << 32), 0);
            assert_ne!(f & (1 << feature::FLUSH), 0);
            assert_ne!(f & (1 << feature::SEG_MAX), 0);
            assert_ne!(f & (1 << feature::BLK_SIZE), 0);
        }
    }
}
