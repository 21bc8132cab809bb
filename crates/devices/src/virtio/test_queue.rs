//! A pretend guest driver's split queue, laid out in guest memory for the device tests.
//!
//! The layout is the one every device test uses: the descriptor table at `base`, the driver
//! (avail) area a page on, the device (used) area a page after that, with room between the
//! parts. (The mock queue of virtio-queue places its used ring over the second half of the
//! avail ring, which breaks once more than half the ring is in use.)

use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Entries in every test queue.
pub(crate) const QSIZE: u16 = 16;
pub(crate) const NEXT: u16 = 1;
pub(crate) const WRITE: u16 = 2;
/// Bytes a queue takes from its base: descriptors, avail and used ring, a page each.
const SPAN: usize = 0x3000;

/// A split queue of `QSIZE` entries at `base`.
pub(crate) struct TestQueue<'a> {
    m: &'a GuestMemoryMmap,
    base: u64,
    /// Where [`Self::push_chain`] writes its next chain.
    next_desc: u16,
}

impl<'a> TestQueue<'a> {
    /// A new, empty queue.
    pub(crate) fn new(m: &'a GuestMemoryMmap, base: u64) -> Self {
        m.write_slice(&[0u8; SPAN], GuestAddress(base)).unwrap();
        Self::attach(m, base)
    }

    /// The queue already at `base`, as it is.
    pub(crate) fn attach(m: &'a GuestMemoryMmap, base: u64) -> Self {
        Self {
            m,
            base,
            next_desc: 0,
        }
    }

    /// The guest memory the queue lives in.
    pub(crate) fn mem(&self) -> &'a GuestMemoryMmap {
        self.m
    }

    pub(crate) fn desc_table_addr(&self) -> GuestAddress {
        GuestAddress(self.base)
    }

    pub(crate) fn avail_addr(&self) -> GuestAddress {
        GuestAddress(self.base + 0x1000)
    }

    pub(crate) fn used_addr(&self) -> GuestAddress {
        GuestAddress(self.base + 0x2000)
    }

    /// `used_event`, at the end of the avail ring.
    pub(crate) fn used_event_addr(&self) -> GuestAddress {
        GuestAddress(self.avail_addr().0 + 4 + 2 * u64::from(QSIZE))
    }

    /// `avail_event`, at the end of the used ring.
    pub(crate) fn avail_event_addr(&self) -> GuestAddress {
        GuestAddress(self.used_addr().0 + 4 + 8 * u64::from(QSIZE))
    }

    /// Writes descriptor `index`; an index past the table is written past it, as a driver
    /// with a bug would.
    pub(crate) fn set_desc(&self, index: u16, d: Descriptor) {
        let addr = self.desc_table_addr().0 + 16 * u64::from(index);
        self.m
            .write_obj(RawDescriptor::from(d), GuestAddress(addr))
            .unwrap();
    }

    pub(crate) fn avail_idx(&self) -> u16 {
        self.m
            .read_obj(GuestAddress(self.avail_addr().0 + 2))
            .unwrap()
    }

    pub(crate) fn set_avail_idx(&self, idx: u16) {
        self.m
            .write_obj(idx, GuestAddress(self.avail_addr().0 + 2))
            .unwrap();
    }

    pub(crate) fn set_avail_entry(&self, position: u16, head: u16) {
        let addr = self.avail_addr().0 + 4 + 2 * u64::from(position % QSIZE);
        self.m.write_obj(head, GuestAddress(addr)).unwrap();
    }

    /// Makes the chain at `head` available (no notification).
    pub(crate) fn push_avail(&self, head: u16) {
        let idx = self.avail_idx();
        self.set_avail_entry(idx, head);
        self.set_avail_idx(idx.wrapping_add(1));
    }

    /// Writes a chain of `bufs` (address, length, flags) at descriptors `head..`, wrapping
    /// round the table, and makes it available.
    pub(crate) fn put_chain(&self, head: u16, bufs: &[(u64, u32, u16)]) {
        for (i, &(addr, len, flags)) in bufs.iter().enumerate() {
            let idx = (head + i as u16) % QSIZE;
            let last = i + 1 == bufs.len();
            let flags = if last { flags } else { flags | NEXT };
            self.set_desc(idx, Descriptor::new(addr, len, flags, (idx + 1) % QSIZE));
        }
        self.push_avail(head);
    }

    /// Writes a chain of `bufs` at the descriptors after the last chain pushed this way and
    /// makes it available; its head.
    pub(crate) fn push_chain(&mut self, bufs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        self.put_chain(head, bufs);
        self.next_desc = (head + bufs.len() as u16) % QSIZE;
        head
    }

    pub(crate) fn used_idx(&self) -> u16 {
        self.m
            .read_obj(GuestAddress(self.used_addr().0 + 2))
            .unwrap()
    }

    /// Used ring entries so far, as (head, len).
    pub(crate) fn used(&self) -> Vec<(u32, u32)> {
        (0..self.used_idx())
            .map(|i| {
                let at = self.used_addr().0 + 4 + 8 * u64::from(i % QSIZE);
                let id: u32 = self.m.read_obj(GuestAddress(at)).unwrap();
                let len: u32 = self.m.read_obj(GuestAddress(at + 4)).unwrap();
                (id, len)
            })
            .collect()
    }

    /// The queue a transport would hand over.
    pub(crate) fn create_queue(&self) -> Queue {
        let mut q = Queue::new(QSIZE).unwrap();
        q.set_size(QSIZE);
        q.try_set_desc_table_address(self.desc_table_addr())
            .unwrap();
        q.try_set_avail_ring_address(self.avail_addr()).unwrap();
        q.try_set_used_ring_address(self.used_addr()).unwrap();
        q.set_ready(true);
        q
    }
}
