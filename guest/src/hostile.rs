//! Malformed descriptor chains for any split virtqueue: what the devices' `evil` commands send
//! to check that a device fails only the bad request (or says it needs a reset) and keeps
//! serving. A driver gives the queue, where the chain may go (from which descriptor on), a
//! buffer of its own and which way the queue's buffers go; the case builds the chain there and
//! publishes it. The driver then notifies and waits (`Vq::wait_used`).

use testkernel::virtq::desc_flags;

use crate::vq::Vq;

/// Which way a queue's buffers go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// The device reads them (requests, transmitted frames).
    DeviceReads,
    /// The device writes them (received frames).
    DeviceWrites,
}

impl Dir {
    fn flags(self) -> u16 {
        match self {
            Dir::DeviceReads => 0,
            Dir::DeviceWrites => desc_flags::WRITE,
        }
    }

    fn opposite(self) -> u16 {
        match self {
            Dir::DeviceReads => desc_flags::WRITE,
            Dir::DeviceWrites => 0,
        }
    }
}

/// The cases every queue takes, with what each one is.
pub const CASES: &[(&str, &str)] = &[
    ("oob", "a buffer at 64 TiB, beyond guest RAM"),
    ("wrap", "a buffer whose end wraps past 2^64"),
    ("mmio", "a buffer on the device's own MMIO window"),
    ("zero", "one zero-length descriptor"),
    (
        "wrongdir",
        "a buffer in the direction the queue does not use",
    ),
    ("loop", "a descriptor whose next is itself"),
    (
        "huge",
        "every descriptor from the first on chained, the last back to the first",
    ),
    (
        "badidx",
        "a driver ring entry with a head index past the queue",
    ),
    (
        "availjump",
        "the driver index moved a queue size and more ahead",
    ),
];

/// Builds case `case` from descriptor `first` on, around the driver's buffer `buf` of `len`
/// bytes (filled as a valid request would be), and publishes it without notifying. Returns
/// the head it published, or None for an unknown case.
pub fn post(vq: &mut Vq, case: &str, first: u16, buf: u64, len: u32, dir: Dir) -> Option<u16> {
    let size = vq.layout.size;
    let f = dir.flags();
    let mut head = first;
    match case {
        "oob" => vq.desc(first, 1 << 46, len, f, 0),
        "wrap" => vq.desc(first, u64::MAX - 0x1ff, 4096, f, 0),
        "mmio" => vq.desc(first, vq.mmio, len.min(256), f, 0),
        "zero" => vq.desc(first, buf, 0, f, 0),
        "wrongdir" => vq.desc(first, buf, len, dir.opposite(), 0),
        "loop" => vq.desc(first, buf, len, f | desc_flags::NEXT, first),
        "huge" => {
            for i in first..size {
                let next = if i + 1 == size { first } else { i + 1 };
                vq.desc(i, buf, len.min(64), f | desc_flags::NEXT, next);
            }
        }
        "badidx" => {
            vq.desc(first, buf, len, f, 0);
            head = size + 7;
        }
        "availjump" => {
            vq.desc(first, buf, len, f, 0);
            let old = vq.next_avail;
            vq.set_avail_entry(old, first);
            vq.set_avail_idx(old.wrapping_add(size + 1));
            return Some(first);
        }
        _ => return None,
    }
    vq.publish(head);
    Some(head)
}
