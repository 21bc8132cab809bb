//! Transmit: one descriptor chain from the guest (its 12-byte virtio-net header first) into the
//! host addresses of its buffers, for one `writev` to the TAP (no copy).
//!
//! Checked first, so that a bad chain fails alone (it is returned unsent, with length 0): every
//! descriptor device-readable and inside guest memory, the chain ends, it holds at least the
//! header, and the frame is no longer than the largest one a TAP takes (64 KiB of segment plus
//! headers). Zero-length descriptors are skipped.

use super::tap::VNET_HDR_LEN;
use virtio_queue::DescriptorChain;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap};

/// Largest chain accepted: the header and a 64 KiB TSO segment with its Ethernet, IP and TCP
/// headers (what Linux's GSO hands a NIC at most).
pub const MAX_TX_LEN: usize = 65562;
/// Most buffers in one frame (`writev`'s IOV_MAX).
pub const MAX_TX_SEGS: usize = 1024;

/// Why a transmit chain is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("a device-writable descriptor in a transmit chain")]
    WrongDirection,
    #[error("transmit buffer 0x{0:x}+0x{1:x} is outside guest memory")]
    OutOfMemory(u64, u32),
    #[error("transmit chain does not end (loop, bad next index or unreadable descriptor)")]
    Unterminated,
    #[error("transmit chain of {0} bytes has no room for the 12-byte header")]
    NoHeader(usize),
    #[error("transmit chain of {0} bytes is longer than {MAX_TX_LEN}")]
    TooBig(usize),
    #[error("transmit chain of more than {MAX_TX_SEGS} buffers")]
    TooManySegments,
}

/// Host buffers of one frame, rebuilt for each chain.
#[derive(Default)]
pub struct IoVecs(pub Vec<libc::iovec>);

// SAFETY: the iovecs only point into guest memory, which every thread may access; they are
// filled and used by one thread at a time (the device's), and are empty when it starts.
unsafe impl Send for IoVecs {}

/// Fills `iov` with the chain's buffers; returns the frame's length (header included).
pub fn gather(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    iov: &mut IoVecs,
) -> Result<usize, TxError> {
    let iov = &mut iov.0;
    iov.clear();
    let mut len = 0usize;
    let mut any = false;
    let mut last_has_next = false;
    for d in chain {
        any = true;
        last_has_next = d.has_next();
        if d.is_write_only() {
            return Err(TxError::WrongDirection);
        }
        if d.len() == 0 {
            continue;
        }
        let out = || TxError::OutOfMemory(d.addr().0, d.len());
        let slice = mem
            .get_slice(d.addr(), d.len() as usize)
            .map_err(|_| out())?;
        len += d.len() as usize;
        if len > MAX_TX_LEN {
            return Err(TxError::TooBig(len));
        }
        if iov.len() == MAX_TX_SEGS {
            return Err(TxError::TooManySegments);
        }
        iov.push(libc::iovec {
            iov_base: slice.ptr_guard().as_ptr() as *mut libc::c_void,
            iov_len: slice.len(),
        });
    }
    if !any || last_has_next {
        return Err(TxError::Unterminated);
    }
    if len < VNET_HDR_LEN {
        return Err(TxError::NoHeader(len));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::net::test_utils::*;
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::QueueOwnedT;
    use vm_memory::GuestAddress;

    fn gather_head(descs: &[(u64, u32, u16)]) -> (Result<usize, TxError>, Vec<(usize, usize)>) {
        let m = mem();
        let vq = TestQueue::new(&m, 0x1_0000);
        for (i, &(addr, len, flags)) in descs.iter().enumerate() {
            vq.set_desc(i as u16, Descriptor::new(addr, len, flags, i as u16 + 1));
        }
        vq.push_avail(0);
        let mut q = vq.create_queue();
        let chain = q.iter(&m).unwrap().next().unwrap();
        let mut iov = IoVecs::default();
        let r = gather(chain, &m, &mut iov);
        let base = m.get_host_address(GuestAddress(0)).unwrap() as usize;
        let segs = iov
            .0
            .iter()
            .map(|v| (v.iov_base as usize - base, v.iov_len))
            .collect();
        (r, segs)
    }

    #[test]
    fn a_frame_in_pieces_becomes_host_iovecs() {
        let (r, segs) = gather_head(&[
            (0x20_0000, 12, NEXT),
            (0x20_1000, 0, NEXT),
            (0x20_2000, 1500, 0),
        ]);
        assert_eq!(r, Ok(1512));
        assert_eq!(segs, vec![(0x20_0000, 12), (0x20_2000, 1500)]);
    }

    #[test]
    fn bad_chains_are_refused() {
        assert_eq!(
            gather_head(&[(0x20_0000, 64, WRITE)]).0,
            Err(TxError::WrongDirection)
        );
        assert_eq!(
            gather_head(&[(0x20_0000, 12, NEXT), (0x20_1000, 64, WRITE)]).0,
            Err(TxError::WrongDirection)
        );
        assert_eq!(
            gather_head(&[(1 << 40, 64, 0)]).0,
            Err(TxError::OutOfMemory(1 << 40, 64))
        );
        assert_eq!(
            gather_head(&[(u64::MAX - 10, 64, 0)]).0,
            Err(TxError::OutOfMemory(u64::MAX - 10, 64))
        );
        assert_eq!(
            gather_head(&[(0x20_0000, 8, 0)]).0,
            Err(TxError::NoHeader(8))
        );
        assert_eq!(
            gather_head(&[(0x20_0000, 0, 0)]).0,
            Err(TxError::NoHeader(0))
        );
        assert_eq!(
            gather_head(&[(0x20_0000, 65536, NEXT), (0x21_0000, 100, 0)]).0,
            Err(TxError::TooBig(65636))
        );
        // A chain whose last descriptor points back at the first.
        let m = mem();
        let vq = TestQueue::new(&m, 0x1_0000);
        vq.set_desc(0, Descriptor::new(0x20_0000, 64, NEXT, 1));
        vq.set_desc(1, Descriptor::new(0x20_1000, 64, NEXT, 0));
        vq.push_avail(0);
        let mut q = vq.create_queue();
        let chain = q.iter(&m).unwrap().next().unwrap();
        assert_eq!(
            gather(chain, &m, &mut IoVecs::default()),
            Err(TxError::Unterminated)
        );
    }
}
