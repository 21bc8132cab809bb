//! Pure parts of the virtio-balloon driver: its features, the order of its queues, which
//! pages it gives the host, and the statistics it reports.
//!
//! The balloon takes the highest usable pages first: page `n` of the balloon is the `n`-th
//! usable 4 KiB page counted down from the top of RAM (above 32 MiB, where `mem fill` writes
//! from the bottom up), so a balloon of `k` pages is always the top `k` pages, and deflating
//! gives back the lowest of them first.

use crate::virtq::{bit, feature::VERSION_1};

/// virtio device id of a memory balloon.
pub const DEVICE_ID: u32 = 5;
/// Bytes per balloon page, whatever the guest's page size.
pub const PAGE: u64 = 4096;

/// virtio-balloon feature bits.
pub mod feature {
    /// A statistics queue exists.
    pub const STATS_VQ: u32 = 1;
    /// The driver may deflate when the guest runs out of memory.
    pub const DEFLATE_ON_OOM: u32 = 2;
    /// A free page reporting queue exists.
    pub const PAGE_REPORTING: u32 = 5;
}

/// Statistics tags (`VIRTIO_BALLOON_S_*`) this driver reports.
pub mod stat {
    /// Free memory.
    pub const MEMFREE: u16 = 4;
    /// Total memory.
    pub const MEMTOT: u16 = 5;
    /// Available memory.
    pub const AVAIL: u16 = 6;
}

/// Bytes per statistics entry (`le16 tag; le64 val`, packed).
pub const STAT_LEN: usize = 10;

/// The features the driver accepts out of `offered`: VERSION_1 and, when wanted and
/// offered, the statistics queue, deflate-on-OOM and free page reporting. `None` without
/// VERSION_1.
pub fn negotiate(offered: u64, stats: bool, report: bool) -> Option<u64> {
    let mut want = bit(VERSION_1) | bit(feature::DEFLATE_ON_OOM);
    if stats {
        want |= bit(feature::STATS_VQ);
    }
    if report {
        want |= bit(feature::PAGE_REPORTING);
    }
    (offered & bit(VERSION_1) != 0).then_some(offered & want)
}

/// What a queue is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// Pages given to the host.
    Inflate,
    /// Pages taken back.
    Deflate,
    /// Statistics.
    Stats,
    /// Free page reports.
    Report,
}

/// The index of `q` with the features `acked` (Linux's numbering: a queue whose feature is
/// missing takes no index), or `None` if it does not exist.
pub fn queue_index(acked: u64, q: Queue) -> Option<u16> {
    let stats = acked & bit(feature::STATS_VQ) != 0;
    let report = acked & bit(feature::PAGE_REPORTING) != 0;
    match q {
        Queue::Inflate => Some(0),
        Queue::Deflate => Some(1),
        Queue::Stats => stats.then_some(2),
        Queue::Report => report.then_some(if stats { 3 } else { 2 }),
    }
}

/// Usable RAM the balloon may take: page-aligned pieces `(start, len)`, lowest first.
pub struct Pool<'a> {
    pieces: &'a [(u64, u64)],
}

impl<'a> Pool<'a> {
    /// `pieces` must be sorted, page-aligned and not overlap.
    pub fn new(pieces: &'a [(u64, u64)]) -> Self {
        Self { pieces }
    }

    /// Pages in the pool.
    pub fn pages(&self) -> u64 {
        self.pieces.iter().map(|&(_, len)| len / PAGE).sum()
    }

    /// The address of balloon page `n`: the `n`-th page down from the top (0 is the highest).
    pub fn page(&self, n: u64) -> Option<u64> {
        let mut left = n;
        for &(start, len) in self.pieces.iter().rev() {
            let pages = len / PAGE;
            if left < pages {
                return Some(start + (pages - 1 - left) * PAGE);
            }
            left -= pages;
        }
        None
    }
}

/// Statistics entry `(tag, val)` as the device reads it.
pub fn stat_entry(tag: u16, val: u64) -> [u8; STAT_LEN] {
    let mut e = [0u8; STAT_LEN];
    e[..2].copy_from_slice(&tag.to_le_bytes());
    e[2..].copy_from_slice(&val.to_le_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn negotiation_and_queue_order() {
        let all = bit(VERSION_1)
            | bit(feature::STATS_VQ)
            | bit(feature::DEFLATE_ON_OOM)
            | bit(feature::PAGE_REPORTING)
            | bit(29);
        let acked = negotiate(all, true, true).unwrap();
        assert_eq!(acked, all & !bit(29), "no EVENT_IDX");
        assert_eq!(queue_index(acked, Queue::Stats), Some(2));
        assert_eq!(queue_index(acked, Queue::Report), Some(3));
        let no_stats = negotiate(all, false, true).unwrap();
        assert_eq!(queue_index(no_stats, Queue::Stats), None);
        assert_eq!(queue_index(no_stats, Queue::Report), Some(2));
        let plain = negotiate(bit(VERSION_1), true, true).unwrap();
        assert_eq!(plain, bit(VERSION_1));
        assert_eq!(queue_index(plain, Queue::Report), None);
        assert_eq!(queue_index(plain, Queue::Deflate), Some(1));
        assert_eq!(negotiate(bit(feature::STATS_VQ), true, true), None);
    }

    #[test]
    fn pages_are_taken_from_the_top_down() {
        let pieces = [(32 * MIB, 4 * MIB), (4096 * MIB, MIB)];
        let pool = Pool::new(&pieces);
        assert_eq!(pool.pages(), 1280);
        assert_eq!(pool.page(0), Some(4097 * MIB - PAGE));
        assert_eq!(pool.page(255), Some(4096 * MIB));
        assert_eq!(pool.page(256), Some(36 * MIB - PAGE));
        assert_eq!(pool.page(1279), Some(32 * MIB));
        assert_eq!(pool.page(1280), None);
        assert_eq!(Pool::new(&[]).page(0), None);
    }

    #[test]
    fn stat_entries_are_packed() {
        assert_eq!(
            stat_entry(MEMTOT_TAG, 0x0102_0304_0506_0708),
            [5, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
    }

    const MEMTOT_TAG: u16 = stat::MEMTOT;
}
