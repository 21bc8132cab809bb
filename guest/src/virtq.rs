//! virtio 1.x constants and the split virtqueue layout, for the virtio-blk
//! driver: status and feature bits, the ring offsets for a queue size, the
//! `vring_need_event` rule of VIRTIO_F_EVENT_IDX, feature negotiation and
//! the virtio-blk request types and status codes.

/// Device status bits (virtio 1.x 2.1).
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest knows how to drive it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device has hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 0x80;
}

/// Feature bit numbers.
pub mod feature {
    /// virtio-blk: `seg_max` is valid.
    pub const BLK_SEG_MAX: u32 = 2;
    /// virtio-blk: the disk is read-only.
    pub const BLK_RO: u32 = 5;
    /// virtio-blk: `blk_size` is valid.
    pub const BLK_BLK_SIZE: u32 = 6;
    /// virtio-blk: FLUSH is supported.
    pub const BLK_FLUSH: u32 = 9;
    /// used_event / avail_event fields.
    pub const RING_EVENT_IDX: u32 = 29;
    /// virtio 1.x (modern) device.
    pub const VERSION_1: u32 = 32;
}

/// `1 << n` as a feature mask.
pub const fn bit(n: u32) -> u64 {
    1u64 << n
}

/// The features the driver accepts out of `offered`: what it understands
/// (`VERSION_1`, the virtio-blk bits it uses, and `RING_EVENT_IDX` if
/// `event_idx`). `None` when the device is not modern (no `VERSION_1`).
pub fn negotiate(offered: u64, event_idx: bool) -> Option<u64> {
    let mut want = bit(feature::VERSION_1)
        | bit(feature::BLK_RO)
        | bit(feature::BLK_FLUSH)
        | bit(feature::BLK_SEG_MAX)
        | bit(feature::BLK_BLK_SIZE);
    if event_idx {
        want |= bit(feature::RING_EVENT_IDX);
    }
    (offered & bit(feature::VERSION_1) != 0).then_some(offered & want)
}

/// The features the console driver accepts out of `offered`: `VERSION_1` and, if `event_idx`,
/// `RING_EVENT_IDX`; never the size, multiport or emergency-write features (port 0 only, on
/// receiveq 0 and transmitq 1). `None` when the device is not modern.
pub fn negotiate_console(offered: u64, event_idx: bool) -> Option<u64> {
    let mut want = bit(feature::VERSION_1);
    if event_idx {
        want |= bit(feature::RING_EVENT_IDX);
    }
    (offered & bit(feature::VERSION_1) != 0).then_some(offered & want)
}

/// Descriptor flags.
pub mod desc_flags {
    /// The chain continues at `next`.
    pub const NEXT: u16 = 1;
    /// The device writes this buffer (else it reads it).
    pub const WRITE: u16 = 2;
}

/// Bytes per descriptor (`addr: u64, len: u32, flags: u16, next: u16`).
pub const DESC_SIZE: u64 = 16;

/// Where the parts of a split virtqueue of `size` entries lie, relative to
/// the start of the queue's memory (descriptor table first, then the
/// driver area on the next page, then the device area on the page after).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Number of entries.
    pub size: u16,
    /// Descriptor table (16-byte aligned).
    pub desc: u64,
    /// Driver area: `flags: u16, idx: u16, ring[size]: u16, used_event: u16`.
    pub avail: u64,
    /// Device area: `flags: u16, idx: u16, ring[size]: {id: u32, len: u32},
    /// avail_event: u16` (4-byte aligned).
    pub used: u64,
    /// Bytes used in all.
    pub total: u64,
}

const fn page_up(x: u64) -> u64 {
    (x + 4095) & !4095
}

impl Layout {
    /// The layout for `size` entries (a power of two, at most 32768).
    pub const fn new(size: u16) -> Self {
        let n = size as u64;
        let desc = 0;
        let avail = page_up(desc + DESC_SIZE * n);
        let used = page_up(avail + 6 + 2 * n);
        let total = page_up(used + 6 + 8 * n);
        Self {
            size,
            desc,
            avail,
            used,
            total,
        }
    }

    /// Offset of descriptor `i`.
    pub const fn desc_at(&self, i: u16) -> u64 {
        self.desc + DESC_SIZE * i as u64
    }

    /// Offset of the driver area's `idx`.
    pub const fn avail_idx(&self) -> u64 {
        self.avail + 2
    }

    /// Offset of driver ring entry `slot` (taken modulo the size).
    pub const fn avail_ring(&self, slot: u16) -> u64 {
        self.avail + 4 + 2 * (slot % self.size) as u64
    }

    /// Offset of `used_event` (after the driver ring).
    pub const fn used_event(&self) -> u64 {
        self.avail + 4 + 2 * self.size as u64
    }

    /// Offset of the device area's `flags`.
    pub const fn used_flags(&self) -> u64 {
        self.used
    }

    /// Offset of the device area's `idx`.
    pub const fn used_idx(&self) -> u64 {
        self.used + 2
    }

    /// Offset of device ring entry `slot` (taken modulo the size).
    pub const fn used_ring(&self, slot: u16) -> u64 {
        self.used + 4 + 8 * (slot % self.size) as u64
    }

    /// Offset of `avail_event` (after the device ring).
    pub const fn avail_event(&self) -> u64 {
        self.used + 4 + 8 * self.size as u64
    }
}

/// VIRTQ_USED_F_NO_NOTIFY: the device does not need notifications now.
pub const USED_F_NO_NOTIFY: u16 = 1;

/// `vring_need_event`: with EVENT_IDX, whether moving an index from `old`
/// to `new` crosses `event` (the other side asked to be told when entry
/// `event` is published).
pub const fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// virtio-blk request types (`VIRTIO_BLK_T_*`).
pub mod blk_type {
    /// Read.
    pub const IN: u32 = 0;
    /// Write.
    pub const OUT: u32 = 1;
    /// Flush the write cache.
    pub const FLUSH: u32 = 4;
    /// Device id string (20 bytes).
    pub const GET_ID: u32 = 8;
}

/// virtio-blk status byte values.
pub mod blk_status {
    /// Success.
    pub const OK: u8 = 0;
    /// Device or driver error.
    pub const IOERR: u8 = 1;
    /// Request unsupported.
    pub const UNSUPP: u8 = 2;
}

/// Length of the GET_ID answer.
pub const BLK_ID_LEN: usize = 20;

/// The text of a GET_ID answer: up to the first NUL (20 bytes at most).
pub fn id_text(raw: &[u8]) -> &[u8] {
    let raw = &raw[..raw.len().min(BLK_ID_LEN)];
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    &raw[..end]
}

/// The name of block device `index` in probe order: `vda`, `vdb`, ...
/// (`vd?` past `vdz`).
pub const fn disk_name(index: usize) -> [u8; 3] {
    let letter = if index < 26 { b'a' + index as u8 } else { b'?' };
    [b'v', b'd', letter]
}

/// The index named by `vd<letter>`.
pub fn disk_index(name: &[u8]) -> Option<usize> {
    match name {
        [b'v', b'd', c @ b'a'..=b'z'] => Some(usize::from(c - b'a')),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_256_entries() {
        let l = Layout::new(256);
        assert_eq!(l.desc, 0);
        assert_eq!(l.avail, 4096);
        assert_eq!(l.used, 8192);
        assert_eq!(l.total, 12288);
        assert_eq!(l.desc_at(255), 255 * 16);
        assert_eq!(l.avail_idx(), 4098);
        assert_eq!(l.avail_ring(0), 4100);
        assert_eq!(l.avail_ring(257), 4102);
        assert_eq!(l.used_event(), 4096 + 4 + 512);
        assert_eq!(l.used_idx(), 8194);
        assert_eq!(l.used_ring(1), 8192 + 12);
        assert_eq!(l.avail_event(), 8192 + 4 + 2048);
        assert!(l.avail_event() + 2 <= l.total);
    }

    #[test]
    fn small_queue_layout_fits() {
        let l = Layout::new(8);
        assert_eq!(l.avail, 4096);
        assert_eq!(l.used, 8192);
        assert_eq!(l.used % 4, 0);
    }

    #[test]
    fn need_event_like_linux() {
        // Asked for entry 5: moving 4 -> 6 crosses it, 5 -> 6 does not.
        assert!(need_event(5, 6, 4));
        assert!(need_event(5, 6, 5));
        assert!(!need_event(5, 5, 4));
        assert!(!need_event(6, 6, 5));
        // Wrap-around.
        assert!(need_event(0xffff, 1, 0xfffe));
        assert!(!need_event(3, 1, 0xfffe));
        // Nothing published: never.
        assert!(!need_event(7, 7, 7));
    }

    #[test]
    fn negotiation() {
        let offered = bit(feature::VERSION_1)
            | bit(feature::RING_EVENT_IDX)
            | bit(feature::BLK_RO)
            | bit(13) // DISCARD: not taken
            | bit(feature::BLK_FLUSH);
        let acked = negotiate(offered, true).unwrap();
        assert_eq!(
            acked,
            bit(feature::VERSION_1)
                | bit(feature::RING_EVENT_IDX)
                | bit(feature::BLK_RO)
                | bit(feature::BLK_FLUSH)
        );
        let acked = negotiate(offered, false).unwrap();
        assert_eq!(acked & bit(feature::RING_EVENT_IDX), 0);
        assert_eq!(negotiate(offered & !bit(feature::VERSION_1), true), None);
    }

    #[test]
    fn console_negotiation_takes_no_port_features() {
        // SIZE, MULTIPORT, EMERG_WRITE (bits 0-2), as QEMU's virtio-serial offers them.
        let offered = bit(feature::VERSION_1) | bit(feature::RING_EVENT_IDX) | 0b111;
        assert_eq!(
            negotiate_console(offered, true),
            Some(bit(feature::VERSION_1) | bit(feature::RING_EVENT_IDX))
        );
        assert_eq!(
            negotiate_console(offered, false),
            Some(bit(feature::VERSION_1))
        );
        assert_eq!(negotiate_console(0b111, true), None);
    }

    #[test]
    fn disk_names() {
        assert_eq!(&disk_name(0), b"vda");
        assert_eq!(&disk_name(5), b"vdf");
        assert_eq!(disk_index(b"vda"), Some(0));
        assert_eq!(disk_index(b"vdz"), Some(25));
        assert_eq!(disk_index(b"vd"), None);
        assert_eq!(disk_index(b"sda"), None);
        assert_eq!(disk_index(b"vdA"), None);
    }

    #[test]
    fn id_strings() {
        assert_eq!(id_text(b"abcd\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"), b"abcd");
        assert_eq!(id_text(b"01234567890123456789xx"), b"01234567890123456789");
        assert_eq!(id_text(&[0u8; 20]), b"");
    }
}
