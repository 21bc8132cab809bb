//! Reading the balloon's requests out of their descriptor chains, through vm-memory's checked
//! accesses. Whatever is malformed is left out and noted ([`Oddities`]); a request never fails
//! as a whole except when it is absurdly large.
//!
//! - inflate and deflate: device-readable buffers of little-endian u32 page frame numbers;
//! - free page reporting: device-writable buffers, each one a free range of guest memory (the
//!   device reads nothing in them);
//! - statistics: device-readable buffers holding the statistics array.

use super::oddity::{Oddities, Oddity};
use super::stats::{self, MAX_STATS_BYTES, STAT_LEN};
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestMemoryMmap};

/// Most page frames one inflate or deflate request may carry: 256 times what Linux puts in
/// one (`VIRTIO_BALLOON_ARRAY_PFNS_MAX`). A bigger request is ignored whole.
pub const MAX_FRAMES: usize = 1 << 16;

type Chain<'a> = DescriptorChain<&'a GuestMemoryMmap>;

/// The page frame numbers of an inflate or deflate request.
pub fn frames(chain: Chain<'_>, mem: &GuestMemoryMmap, odd: &mut Oddities) -> Vec<u32> {
    let mut bufs = Vec::new();
    let mut total = 0usize;
    for d in chain {
        if d.is_write_only() {
            odd.note(Oddity::WrongDirection, 1);
            continue;
        }
        let len = d.len() as usize;
        if !len.is_multiple_of(4) {
            odd.note(Oddity::PartialEntry, 1);
        }
        total = total.saturating_add(len / 4);
        if total > MAX_FRAMES {
            odd.note(Oddity::TooManyPages, total as u64);
            return Vec::new();
        }
        bufs.push((d.addr(), len - len % 4));
    }
    let mut frames = Vec::with_capacity(total);
    let mut bytes = Vec::new();
    for (addr, len) in bufs {
        bytes.resize(len, 0);
        if mem.read_slice(&mut bytes, addr).is_err() {
            odd.note(Oddity::UnreadableBuffer, 1);
            continue;
        }
        frames.extend(
            bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
    frames
}

/// The free ranges (guest address, length) of a free page report.
pub fn free_ranges(chain: Chain<'_>, odd: &mut Oddities) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    for d in chain {
        if !d.is_write_only() {
            odd.note(Oddity::WrongDirection, 1);
            continue;
        }
        ranges.push((d.addr().0, u64::from(d.len())));
    }
    ranges
}

/// The statistics of a statistics buffer (at most [`MAX_STATS_BYTES`] of it).
pub fn statistics(chain: Chain<'_>, mem: &GuestMemoryMmap, odd: &mut Oddities) -> Vec<(u16, u64)> {
    let mut data = Vec::new();
    for d in chain {
        if d.is_write_only() {
            odd.note(Oddity::WrongDirection, 1);
            continue;
        }
        let room = MAX_STATS_BYTES - data.len();
        let len = d.len() as usize;
        if len > room {
            odd.note(Oddity::StatsTooLong, 1);
        }
        let take = len.min(room);
        let start = data.len();
        data.resize(start + take, 0);
        if mem.read_slice(&mut data[start..], d.addr()).is_err() {
            odd.note(Oddity::UnreadableBuffer, 1);
            data.truncate(start);
        }
        if data.len() == MAX_STATS_BYTES {
            break;
        }
    }
    if !data.len().is_multiple_of(STAT_LEN) {
        odd.note(Oddity::PartialEntry, 1);
    }
    stats::parse(&data)
}
