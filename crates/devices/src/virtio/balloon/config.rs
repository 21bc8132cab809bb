//! The virtio-balloon configuration space (`struct virtio_balloon_config`, virtio 1.x 5.5.4),
//! the features this device offers, and which queue is which once the driver has chosen.

use crate::virtio::features::{bit, RING_EVENT_IDX};

/// Feature bits of virtio-balloon (bit numbers).
pub mod feature {
    /// The driver must tell the host before it reuses a page (not offered).
    pub const MUST_TELL_HOST: u32 = 0;
    /// A statistics queue exists.
    pub const STATS_VQ: u32 = 1;
    /// The driver may deflate the balloon when the guest runs out of memory.
    pub const DEFLATE_ON_OOM: u32 = 2;
    /// Free page hints for migration (not offered).
    pub const FREE_PAGE_HINT: u32 = 3;
    /// The driver poisons pages it frees (not offered).
    pub const PAGE_POISON: u32 = 4;
    /// A reporting queue for free pages exists.
    pub const PAGE_REPORTING: u32 = 5;
}

/// Balloon page frames are 4 KiB whatever the guest's page size (`VIRTIO_BALLOON_PFN_SHIFT`).
pub const PAGE_SHIFT: u32 = 12;
/// Bytes per balloon page.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// The configuration space exposed: `num_pages` (the device's target) and `actual` (what the
/// driver has in the balloon). The fields after them belong to features not offered.
pub const CONFIG_LEN: usize = 8;
/// Offset of `actual`, the one field the driver writes.
const ACTUAL_OFFSET: u64 = 4;

/// The features offered for this configuration.
pub fn offered_features(deflate_on_oom: bool, free_page_reporting: bool) -> u64 {
    let mut f = bit(feature::STATS_VQ) | bit(RING_EVENT_IDX);
    if deflate_on_oom {
        f |= bit(feature::DEFLATE_ON_OOM);
    }
    if free_page_reporting {
        f |= bit(feature::PAGE_REPORTING);
    }
    f
}

/// What a queue is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueRole {
    /// Page frames the driver gives up.
    Inflate,
    /// Page frames the driver takes back.
    Deflate,
    /// The driver's memory statistics.
    Stats,
    /// Free page ranges the driver reports.
    Reporting,
}

/// The queues in index order for the features the driver accepted. Queues that a feature
/// brings exist only with it, and the next ones move up: Linux numbers its virtio-mmio queues
/// this way (it skips a missing queue's index), so without STATS_VQ the reporting queue is
/// queue 2.
pub fn queue_roles(acked: u64) -> Vec<QueueRole> {
    let mut roles = vec![QueueRole::Inflate, QueueRole::Deflate];
    if acked & bit(feature::STATS_VQ) != 0 {
        roles.push(QueueRole::Stats);
    }
    if acked & bit(feature::PAGE_REPORTING) != 0 {
        roles.push(QueueRole::Reporting);
    }
    roles
}

/// The configuration space: the target and the driver's count, both in 4 KiB pages.
pub fn config_space(num_pages: u32, actual: u32) -> [u8; CONFIG_LEN] {
    let mut c = [0u8; CONFIG_LEN];
    c[..4].copy_from_slice(&num_pages.to_le_bytes());
    c[4..].copy_from_slice(&actual.to_le_bytes());
    c
}

/// `actual` after a driver write of `data` at `offset` (any width; bytes outside `actual` are
/// read-only and ignored). None when the write does not touch `actual`.
pub fn written_actual(actual: u32, offset: u64, data: &[u8]) -> Option<u32> {
    let mut bytes = actual.to_le_bytes();
    let mut touched = false;
    for (i, b) in data.iter().enumerate() {
        let at = offset.checked_add(i as u64)?;
        if let Some(k) = at
            .checked_sub(ACTUAL_OFFSET)
            .filter(|&k| k < 4)
            .map(|k| k as usize)
        {
            bytes[k] = *b;
            touched = true;
        }
    }
    touched.then(|| u32::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_features() {
        assert_eq!(
            config_space(0x0102_0304, 7),
            [4, 3, 2, 1, 7, 0, 0, 0],
            "num_pages then actual, little-endian"
        );
        let plain = offered_features(false, false);
        assert_ne!(plain & bit(feature::STATS_VQ), 0);
        assert_eq!(plain & bit(feature::DEFLATE_ON_OOM), 0);
        assert_eq!(plain & bit(feature::PAGE_REPORTING), 0);
        let all = offered_features(true, true);
        assert_ne!(all & bit(feature::DEFLATE_ON_OOM), 0);
        assert_ne!(all & bit(feature::PAGE_REPORTING), 0);
        for f in [plain, all] {
            for never in [
                feature::MUST_TELL_HOST,
                feature::FREE_PAGE_HINT,
                feature::PAGE_POISON,
            ] {
                assert_eq!(f & bit(never), 0);
            }
        }
    }

    #[test]
    fn queues_follow_the_accepted_features() {
        use QueueRole::*;
        assert_eq!(queue_roles(0), [Inflate, Deflate]);
        let stats = bit(feature::STATS_VQ);
        let report = bit(feature::PAGE_REPORTING);
        assert_eq!(queue_roles(stats), [Inflate, Deflate, Stats]);
        assert_eq!(queue_roles(report), [Inflate, Deflate, Reporting]);
        assert_eq!(
            queue_roles(stats | report),
            [Inflate, Deflate, Stats, Reporting]
        );
    }

    #[test]
    fn only_actual_is_writable() {
        assert_eq!(written_actual(0, 4, &5u32.to_le_bytes()), Some(5));
        assert_eq!(written_actual(0x1122_3344, 5, &[0xaa]), Some(0x1122_aa44));
        assert_eq!(written_actual(9, 0, &[1, 2, 3, 4]), None, "num_pages");
        assert_eq!(written_actual(9, 8, &[1; 8]), None, "past the fields");
        assert_eq!(
            written_actual(0, 2, &[1, 2, 3, 4]),
            Some(0x0000_0403),
            "straddling"
        );
        assert_eq!(written_actual(1, u64::MAX, &[1, 2]), None);
    }
}
