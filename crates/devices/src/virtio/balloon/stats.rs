//! The guest's memory statistics (virtio 1.x 5.5.6.3): what the driver writes in the buffer it
//! puts on the statistics queue, an array of `struct virtio_balloon_stat { le16 tag; le64 val; }`
//! (10 bytes each, packed), and the names operators read them under (QEMU's `guest-stats`
//! names).

use std::time::SystemTime;

/// Bytes per statistic.
pub const STAT_LEN: usize = 10;
/// Most bytes of a statistics buffer read: far more than the 16 statistics Linux knows.
pub const MAX_STATS_BYTES: usize = 64 * STAT_LEN;

/// Each tag's name, by tag (`VIRTIO_BALLOON_S_*`); QEMU's names for them.
const NAMES: [&str; 16] = [
    "stat-swap-in",
    "stat-swap-out",
    "stat-major-faults",
    "stat-minor-faults",
    "stat-free-memory",
    "stat-total-memory",
    "stat-available-memory",
    "stat-disk-caches",
    "stat-htlb-pgalloc",
    "stat-htlb-pgfail",
    "stat-oom-kills",
    "stat-alloc-stalls",
    "stat-async-scans",
    "stat-direct-scans",
    "stat-async-reclaims",
    "stat-direct-reclaims",
];

/// The name of statistic `tag`; None for tags this build does not know.
pub fn name(tag: u16) -> Option<&'static str> {
    NAMES.get(usize::from(tag)).copied()
}

/// One report of the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestStats {
    /// (tag, value) in the order the guest gave them; a tag given twice keeps its last value.
    pub values: Vec<(u16, u64)>,
    /// When the device received it.
    pub received: SystemTime,
}

impl GuestStats {
    /// The known statistics by name, in tag order.
    pub fn named(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<(u16, &'static str, u64)> = self
            .values
            .iter()
            .filter_map(|&(t, val)| name(t).map(|n| (t, n, val)))
            .collect();
        v.sort_by_key(|&(t, _, _)| t);
        v.into_iter().map(|(_, n, val)| (n, val)).collect()
    }

    /// Seconds since the Unix epoch of [`GuestStats::received`].
    pub fn received_unix(&self) -> u64 {
        self.received
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// The statistics in `bytes` (whole entries only; a trailing part is ignored). Unknown tags
/// are kept, so a report can be checked; [`GuestStats::named`] leaves them out.
pub fn parse(bytes: &[u8]) -> Vec<(u16, u64)> {
    let mut out: Vec<(u16, u64)> = Vec::new();
    for e in bytes.chunks_exact(STAT_LEN) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let mut v = [0u8; 8];
        v.copy_from_slice(&e[2..]);
        let val = u64::from_le_bytes(v);
        match out.iter_mut().find(|(t, _)| *t == tag) {
            Some(slot) => slot.1 = val,
            None => out.push((tag, val)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u16, val: u64) -> Vec<u8> {
        let mut e = tag.to_le_bytes().to_vec();
        e.extend_from_slice(&val.to_le_bytes());
        e
    }

    #[test]
    fn entries_are_packed_ten_bytes() {
        let mut b = entry(4, 1 << 30);
        b.extend(entry(5, 2 << 30));
        b.extend(entry(99, 7));
        b.extend(entry(4, 123));
        b.extend([1, 2, 3]); // a partial entry
        let values = parse(&b);
        assert_eq!(values, vec![(4, 123), (5, 2 << 30), (99, 7)]);
        let s = GuestStats {
            values,
            received: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(42),
        };
        assert_eq!(
            s.named(),
            vec![("stat-free-memory", 123), ("stat-total-memory", 2 << 30)]
        );
        assert_eq!(s.received_unix(), 42);
        assert_eq!(name(0), Some("stat-swap-in"));
        assert_eq!(name(15), Some("stat-direct-reclaims"));
        assert_eq!(name(16), None);
        assert!(parse(&[0; 9]).is_empty());
    }
}
