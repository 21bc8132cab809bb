//! Receive: placing one frame from the TAP (its 12-byte virtio-net header first) into the
//! guest's receive buffers (virtio 1.x 5.1.6.3 and 5.1.6.4).
//!
//! Without VIRTIO_NET_F_MRG_RXBUF a frame goes into one buffer (one descriptor chain); with it,
//! into as many as it needs, the header's `num_buffers` saying how many. Nothing is taken from
//! the ring until the whole frame fits: when it does not yet, every buffer looked at goes back
//! (the frame waits for the guest to add more). So a slow guest never loses a frame, and the
//! ring is never left half-filled.
//!
//! A chain that can hold nothing (a device-readable descriptor, a buffer outside guest memory, a
//! chain that does not end, fewer than 12 bytes) fails alone: it is returned with length 0,
//! which a driver drops as an error, and the frame goes into the next buffers. A frame that can
//! never fit (bigger than one buffer without MRG_RXBUF, or than the whole ring) is dropped, and
//! the buffers stay for the next frame.

use super::tap::VNET_HDR_LEN;
use std::ops::Range;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Where `num_buffers` sits in the header.
const NUM_BUFFERS: Range<usize> = 10..12;

/// What became of one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// In the guest's ring, over `buffers` chains; `bad` unusable chains were returned.
    Delivered { buffers: u16, bad: u16 },
    /// Not enough buffers now: the frame must wait. The ring is where it was, except for `bad`
    /// unusable chains at its front, which were returned.
    NoRoom { bad: u16 },
    /// The frame can never fit (see the module documentation); drop it.
    TooBig { bad: u16 },
    /// The driver broke the queue (its avail index, or a used ring that cannot be written).
    Broken(String),
}

/// Why a receive chain cannot take any frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadChain {
    #[error("a device-readable descriptor in a receive chain")]
    WrongDirection,
    #[error("receive buffer 0x{0:x}+0x{1:x} is outside guest memory")]
    OutOfMemory(u64, u32),
    #[error("receive chain does not end (loop, bad next index or unreadable descriptor)")]
    Unterminated,
    #[error("receive chain of {0} bytes cannot hold the 12-byte header")]
    TooSmall(u64),
}

struct Chain {
    head: u16,
    segs: Range<usize>,
    cap: u64,
}

/// Buffers reused from frame to frame (no allocation per frame).
#[derive(Default)]
pub struct RxScratch {
    chains: Vec<Chain>,
    segs: Vec<(GuestAddress, u32)>,
    bad: Vec<u16>,
    /// Why the last unusable chains were refused, for the log.
    pub last_bad: Option<BadChain>,
}

/// Checks one chain's descriptors, appending its buffers to `segs`; returns its capacity.
fn classify(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    segs: &mut Vec<(GuestAddress, u32)>,
) -> Result<u64, BadChain> {
    let start = segs.len();
    let result = (|| {
        let mut cap = 0u64;
        let mut any = false;
        let mut last_has_next = false;
        for d in chain {
            any = true;
            last_has_next = d.has_next();
            if !d.is_write_only() {
                return Err(BadChain::WrongDirection);
            }
            if d.len() == 0 {
                continue;
            }
            if !mem.check_range(d.addr(), d.len() as usize) {
                return Err(BadChain::OutOfMemory(d.addr().0, d.len()));
            }
            segs.push((d.addr(), d.len()));
            cap += u64::from(d.len());
        }
        // `DescriptorChain` stops early, without an error, on a loop, a next index past the
        // queue or an unreadable descriptor: the last one it yields then still says "next".
        if !any || last_has_next {
            return Err(BadChain::Unterminated);
        }
        if cap < VNET_HDR_LEN as u64 {
            return Err(BadChain::TooSmall(cap));
        }
        Ok(cap)
    })();
    if result.is_err() {
        segs.truncate(start);
    }
    result
}

/// Places `frame` (header and data, as read from the TAP; its `num_buffers` is filled in here)
/// into `q`'s buffers. Does not interrupt the guest: the caller does, once per batch.
pub fn deliver(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    frame: &mut [u8],
    mergeable: bool,
    s: &mut RxScratch,
) -> RxOutcome {
    s.chains.clear();
    s.segs.clear();
    s.bad.clear();
    let need = frame.len() as u64;
    let size = q.size();
    let mut have = 0u64;
    let mut seen = 0u16;
    let mut bad_front = 0u16;
    // Chains to put back if the frame cannot go in now: every one after the unusable chains
    // at the front, which are returned at once.
    let mut taken = 0u16;
    loop {
        if !s.chains.is_empty() && (!mergeable || have >= need) {
            break;
        }
        if seen == size {
            break;
        }
        let chain = match q.iter(mem) {
            Ok(mut avail) => avail.next(),
            Err(e) => return RxOutcome::Broken(e.to_string()),
        };
        let Some(chain) = chain else { break };
        seen += 1;
        let head = chain.head_index();
        let segs_start = s.segs.len();
        match classify(chain, mem, &mut s.segs) {
            Ok(cap) => {
                s.chains.push(Chain {
                    head,
                    segs: segs_start..s.segs.len(),
                    cap,
                });
                have += cap;
                taken += 1;
            }
            Err(why) => {
                s.last_bad = Some(why);
                if s.chains.is_empty() {
                    // Nothing of this frame is placed yet: return the chain now, so it cannot
                    // hold the ring up.
                    if let Err(e) = q.add_used(mem, head, 0) {
                        return RxOutcome::Broken(e.to_string());
                    }
                    bad_front += 1;
                } else {
                    s.bad.push(head);
                    taken += 1;
                }
            }
        }
    }
    let fits = match s.chains.first() {
        None => false,
        Some(c) if !mergeable => c.cap >= need,
        Some(_) => have >= need,
    };
    if !fits {
        for _ in 0..taken {
            q.go_to_previous_position();
        }
        let never = seen == size || (!mergeable && !s.chains.is_empty());
        return if never {
            RxOutcome::TooBig { bad: bad_front }
        } else {
            RxOutcome::NoRoom { bad: bad_front }
        };
    }
    // Every chain taken is needed: taking stops as soon as the frame fits.
    let buffers = s.chains.len() as u16;
    frame[NUM_BUFFERS].copy_from_slice(&buffers.to_le_bytes());
    let mut off = 0usize;
    for c in &s.chains {
        let start = off;
        for &(addr, len) in &s.segs[c.segs.clone()] {
            if off == frame.len() {
                break;
            }
            let n = (len as usize).min(frame.len() - off);
            // The range was checked; a failure here means guest memory changed under us.
            if mem.write_slice(&frame[off..off + n], addr).is_err() {
                break;
            }
            off += n;
        }
        if let Err(e) = q.add_used(mem, c.head, (off - start) as u32) {
            return RxOutcome::Broken(e.to_string());
        }
    }
    for &head in &s.bad {
        if let Err(e) = q.add_used(mem, head, 0) {
            return RxOutcome::Broken(e.to_string());
        }
    }
    RxOutcome::Delivered {
        buffers,
        bad: bad_front + s.bad.len() as u16,
    }
}

/// Whether the guest has made a receive buffer available that the device has not taken.
pub fn has_buffers(q: &Queue, mem: &GuestMemoryMmap) -> Result<bool, virtio_queue::Error> {
    let avail = q.avail_idx(mem, std::sync::atomic::Ordering::Acquire)?;
    Ok(avail.0 != q.next_avail())
}

#[cfg(test)]
mod tests;
