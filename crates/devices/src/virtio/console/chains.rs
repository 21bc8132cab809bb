//! Checking the guest's buffers and moving bytes through them (virtio 1.x 5.3.6): a transmitq
//! chain holds device-readable buffers of output, a receiveq chain device-writable buffers for
//! input. A chain is checked as a whole before any byte moves, so a bad one moves nothing: it
//! is returned with length 0 and the queue goes on.

use std::sync::Arc;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

/// Guest memory as the chains hold it: shared, so a chain can wait between two steps of
/// copying (the client may take its bytes a few at a time).
pub type Mem = Arc<GuestMemoryMmap>;
/// A descriptor chain that owns its view of guest memory.
pub type Chain = DescriptorChain<Mem>;

/// What is wrong with a chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("descriptor chain longer than {0} descriptors")]
    TooLong(usize),
    #[error("descriptor chain does not end (loop, bad next index or unreadable descriptor)")]
    Unterminated,
    #[error("empty descriptor chain")]
    Empty,
    #[error("device-writable buffer in a transmitq chain")]
    WritableOutput,
    #[error("device-readable buffer in a receiveq chain")]
    ReadableInput,
    #[error("buffer 0x{0:x}+0x{1:x} is outside guest memory")]
    OutOfMemory(u64, u32),
}

fn in_memory(mem: &GuestMemoryMmap, addr: GuestAddress, len: u32) -> Result<(), ChainError> {
    let end_ok = addr.checked_add(u64::from(len)).is_some();
    if end_ok && mem.check_range(addr, len as usize, Permissions::ReadWrite) {
        Ok(())
    } else {
        Err(ChainError::OutOfMemory(addr.raw_value(), len))
    }
}

/// Checks a chain's descriptors: at most `max` of them, the last one ending the chain, every
/// one device-writable (`writable`) or device-readable, every one inside guest memory. Calls
/// `each` for every non-empty buffer; returns the total length.
fn check(
    descs: impl IntoIterator<Item = Descriptor>,
    mem: &GuestMemoryMmap,
    max: usize,
    writable: bool,
    mut each: impl FnMut(GuestAddress, u32),
) -> Result<u64, ChainError> {
    let mut last = None;
    let mut total = 0u64;
    for (count, d) in descs.into_iter().enumerate() {
        if count == max {
            return Err(ChainError::TooLong(max));
        }
        if d.is_write_only() != writable {
            return Err(if writable {
                ChainError::ReadableInput
            } else {
                ChainError::WritableOutput
            });
        }
        in_memory(mem, d.addr(), d.len())?;
        if d.len() > 0 {
            each(d.addr(), d.len());
        }
        total += u64::from(d.len());
        last = Some(d);
    }
    // `DescriptorChain` stops early (without an error) on a loop, an out-of-range next index
    // or an unreadable descriptor: the last one it yields then still says "next".
    match last {
        None => Err(ChainError::Empty),
        Some(d) if d.has_next() => Err(ChainError::Unterminated),
        Some(_) => Ok(total),
    }
}

/// A transmitq chain being copied out, checked first; it can stop between any two bytes and
/// go on later, holding no copy of its own.
pub struct TxCursor {
    head: u16,
    chain: Chain,
    /// What is left of the descriptor being copied.
    current: Option<(GuestAddress, u32)>,
    remaining: u64,
    consumed: u64,
}

impl TxCursor {
    /// Checks `chain` (at most `max` descriptors).
    pub fn new(chain: Chain, max: usize) -> Result<Self, ChainError> {
        let total = check(chain.clone(), chain.memory(), max, false, |_, _| {})?;
        Ok(Self {
            head: chain.head_index(),
            chain,
            current: None,
            remaining: total,
            consumed: 0,
        })
    }

    pub fn head(&self) -> u16 {
        self.head
    }

    /// Bytes not copied yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Bytes copied (or skipped) so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// The next non-empty piece of buffer, at most `limit` bytes, and moves past it.
    fn take(&mut self, limit: u64) -> Option<(GuestAddress, u32)> {
        if self.remaining == 0 || limit == 0 {
            return None;
        }
        let (addr, len) = match self.current.take() {
            Some(c) => c,
            None => loop {
                // A chain the guest changed after the check may end early: then it is done.
                let Some(d) = self.chain.next() else {
                    self.remaining = 0;
                    return None;
                };
                if d.len() > 0 {
                    break (d.addr(), d.len());
                }
            },
        };
        let n = u64::from(len).min(limit).min(self.remaining);
        if n < u64::from(len) {
            // `addr + len` was checked to be in memory, so `addr + n` is too.
            self.current = Some((addr.unchecked_add(n), len - n as u32));
        }
        self.remaining -= n;
        self.consumed += n;
        Some((addr, n as u32))
    }

    /// Copies the next bytes into `out`, as many as fit; returns how many.
    pub fn copy_into(&mut self, out: &mut [u8]) -> Result<usize, ChainError> {
        let mut done = 0;
        while done < out.len() {
            let Some((addr, n)) = self.take((out.len() - done) as u64) else {
                break;
            };
            let dst = &mut out[done..done + n as usize];
            self.chain
                .memory()
                .read_slice(dst, addr)
                .map_err(|_| ChainError::OutOfMemory(addr.raw_value(), n))?;
            done += n as usize;
        }
        Ok(done)
    }

    /// Moves past the next `n` bytes without copying them; returns how many it skipped.
    pub fn skip(&mut self, n: u64) -> u64 {
        let mut skipped = 0;
        while skipped < n {
            let Some((_, k)) = self.take(n - skipped) else {
                break;
            };
            skipped += u64::from(k);
        }
        skipped
    }
}

/// Checks a receiveq chain (at most `max` descriptors) and puts its buffers in `bufs`;
/// returns their total length.
pub fn input_buffers(
    chain: &Chain,
    max: usize,
    bufs: &mut Vec<(GuestAddress, u32)>,
) -> Result<u64, ChainError> {
    bufs.clear();
    check(chain.clone(), chain.memory(), max, true, |a, l| {
        bufs.push((a, l))
    })
}

/// Writes `data` into `bufs` in order (they were checked, and hold at least `data.len()`).
pub fn scatter(
    mem: &GuestMemoryMmap,
    bufs: &[(GuestAddress, u32)],
    mut data: &[u8],
) -> Result<(), ChainError> {
    for &(addr, len) in bufs {
        if data.is_empty() {
            break;
        }
        let n = data.len().min(len as usize);
        mem.write_slice(&data[..n], addr)
            .map_err(|_| ChainError::OutOfMemory(addr.raw_value(), n as u32))?;
        data = &data[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_utils::*;
    use super::*;
    use virtio_queue::QueueOwnedT;

    fn pop(q: &mut virtio_queue::Queue, m: &Mem) -> Chain {
        q.iter(m.clone()).unwrap().next().unwrap()
    }

    #[test]
    fn a_transmit_chain_is_copied_in_pieces_and_skipped() {
        let m = Arc::new(mem());
        let vq = TestQueue::new(&m, TX_RING);
        let a = put_data(&m, 0x20_0000, b"hello, ");
        let b = put_data(&m, 0x20_1000, b"");
        let c = put_data(&m, 0x20_2000, b"world");
        vq.chain(0, &[(a, 7, false), (b, 0, false), (c, 5, false)]);
        let mut q = vq.create_queue();
        let mut cur = TxCursor::new(pop(&mut q, &m), 16).unwrap();
        assert_eq!((cur.head(), cur.remaining()), (0, 12));
        let mut out = [0u8; 5];
        assert_eq!(cur.copy_into(&mut out).unwrap(), 5);
        assert_eq!(&out, b"hello");
        assert_eq!(cur.skip(3), 3);
        assert_eq!(cur.copy_into(&mut out).unwrap(), 4);
        assert_eq!(&out[..4], b"orld");
        assert!(cur.is_done());
        assert_eq!(cur.consumed(), 12);
        assert_eq!(cur.copy_into(&mut out).unwrap(), 0);
        assert_eq!(cur.skip(10), 0);
    }

    #[test]
    fn bad_chains_are_named() {
        let m = Arc::new(mem());
        let vq = TestQueue::new(&m, TX_RING);
        let ok = put_data(&m, 0x20_0000, b"x");
        type Bufs<'a> = &'a [(u64, u32, bool)];
        let cases: [(Bufs, ChainError); 4] = [
            (&[(ok, 1, true)], ChainError::WritableOutput),
            (
                &[(ok, 1, false), (1 << 46, 8, false)],
                ChainError::OutOfMemory(1 << 46, 8),
            ),
            (
                &[(u64::MAX - 3, 8, false)],
                ChainError::OutOfMemory(u64::MAX - 3, 8),
            ),
            (&[(ok, 1, false); 6], ChainError::TooLong(4)),
        ];
        for (descs, want) in cases {
            let vq = TestQueue::new(&m, TX_RING);
            vq.chain(0, descs);
            let mut q = vq.create_queue();
            assert_eq!(TxCursor::new(pop(&mut q, &m), 4).err(), Some(want));
        }
        // A descriptor whose next is itself.
        vq.set_desc(0, Descriptor::new(ok, 1, 1, 0));
        vq.push_avail(0);
        let mut q = vq.create_queue();
        assert_eq!(
            TxCursor::new(pop(&mut q, &m), 16).err(),
            Some(ChainError::Unterminated)
        );
        let mut bufs = Vec::new();
        let vq = TestQueue::new(&m, RX_RING);
        vq.chain(0, &[(ok, 4, true), (ok, 4, false)]);
        let mut q = vq.create_queue();
        assert_eq!(
            input_buffers(&pop(&mut q, &m), 16, &mut bufs),
            Err(ChainError::ReadableInput)
        );
    }

    #[test]
    fn input_is_scattered_over_the_buffers() {
        let m = Arc::new(mem());
        let vq = TestQueue::new(&m, RX_RING);
        vq.chain(
            0,
            &[
                (0x30_0000, 3, true),
                (0x30_1000, 0, true),
                (0x30_2000, 8, true),
            ],
        );
        let mut q = vq.create_queue();
        let mut bufs = Vec::new();
        let total = input_buffers(&pop(&mut q, &m), 16, &mut bufs).unwrap();
        assert_eq!(total, 11);
        assert_eq!(bufs.len(), 2, "empty buffers are left out");
        scatter(&m, &bufs, b"abcdef").unwrap();
        assert_eq!(read_guest(&m, 0x30_0000, 3), b"abc");
        assert_eq!(read_guest(&m, 0x30_2000, 3), b"def");
    }

    mod props {
        use super::super::super::test_utils::TestQueue;
        use super::*;
        use proptest::prelude::*;
        use vm_memory::GuestMemoryMmap;

        /// [0, 1 MiB) and [2 MiB, 3 MiB): a hole between, nothing above.
        fn memory() -> Mem {
            Arc::new(
                GuestMemoryMmap::from_ranges(&[
                    (GuestAddress(0), 0x10_0000),
                    (GuestAddress(0x20_0000), 0x10_0000),
                ])
                .unwrap(),
            )
        }

        fn addr() -> impl Strategy<Value = u64> {
            prop_oneof![
                4 => 0u64..0x30_0000,
                1 => prop::sample::select(&[0u64, 0xf_ffff, 0x10_0000, 0x1f_ffff, 0x20_0000, 0x2f_ffff][..]),
                1 => (u64::MAX - 0x1000)..=u64::MAX,
                1 => any::<u64>(),
            ]
        }

        fn len() -> impl Strategy<Value = u32> {
            prop_oneof![4 => 0u32..8192, 1 => any::<u32>()]
        }

        fn descs() -> impl Strategy<Value = Vec<(u64, u32, u16, u16)>> {
            prop::collection::vec((addr(), len(), 0u16..8, 0u16..20), 16)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Whatever the guest's descriptors say: no panic; an accepted transmit chain
            /// yields exactly its length, from guest memory; accepted receive buffers all lie
            /// in guest memory and add up.
            #[test]
            fn any_chain_is_checked_before_a_byte_moves(d in descs(), head in 0u16..20) {
                let m = memory();
                let vq = TestQueue::new(&m, 0x4_0000);
                for (i, &(a, l, f, n)) in d.iter().enumerate() {
                    vq.set_desc(i as u16, Descriptor::new(a, l, f, n));
                }
                vq.push_avail(head);
                let mut q = vq.create_queue();
                let chain = q.iter(m.clone()).unwrap().next().unwrap();
                let mut bufs = Vec::new();
                if let Ok(total) = input_buffers(&chain, 16, &mut bufs) {
                    let sum: u64 = bufs.iter().map(|&(_, l)| u64::from(l)).sum();
                    prop_assert_eq!(sum, total);
                    for &(a, l) in &bufs {
                        prop_assert!(m.check_range(a, l as usize, Permissions::ReadWrite));
                    }
                }
                if let Ok(mut c) = TxCursor::new(chain, 16) {
                    let want = c.remaining();
                    let mut out = vec![0u8; 65536];
                    let mut got = 0u64;
                    loop {
                        let n = c.copy_into(&mut out).unwrap() as u64;
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    prop_assert_eq!(got, want);
                    prop_assert!(c.is_done());
                }
            }
        }
    }
}
