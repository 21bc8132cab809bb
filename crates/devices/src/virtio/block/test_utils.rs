//! A pretend guest driver for the block tests: guest memory, a mock split queue in it, request
//! chains and eventfd waits.

use std::os::fd::AsRawFd;
use std::time::Duration;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::tempfile::TempFile;

pub const QUEUE_BASE: u64 = 0x1_0000;
pub const QSIZE: u16 = 16;
const NEXT: u16 = 1;
const WRITE: u16 = 2;

pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

/// A split queue laid out in guest memory the way a driver would, with room between the
/// parts. (The mock queue of virtio-queue places its used ring over the second half of the
/// avail ring, which breaks once more than half the ring is in use.)
pub struct TestQueue<'a> {
    m: &'a GuestMemoryMmap,
}

impl<'a> TestQueue<'a> {
    pub fn new(m: &'a GuestMemoryMmap) -> Self {
        m.write_slice(&[0u8; 0x3000], GuestAddress(QUEUE_BASE))
            .unwrap();
        Self { m }
    }

    pub fn desc_table_addr(&self) -> GuestAddress {
        GuestAddress(QUEUE_BASE)
    }

    pub fn avail_addr(&self) -> GuestAddress {
        GuestAddress(QUEUE_BASE + 0x1000)
    }

    pub fn used_addr(&self) -> GuestAddress {
        GuestAddress(QUEUE_BASE + 0x2000)
    }

    /// `used_event`, at the end of the avail ring.
    pub fn used_event_addr(&self) -> GuestAddress {
        GuestAddress(self.avail_addr().0 + 4 + 2 * u64::from(QSIZE))
    }

    /// `avail_event`, at the end of the used ring.
    pub fn avail_event_addr(&self) -> GuestAddress {
        GuestAddress(self.used_addr().0 + 4 + 8 * u64::from(QSIZE))
    }

    pub fn set_desc(&self, index: u16, d: Descriptor) {
        let addr = self.desc_table_addr().0 + 16 * u64::from(index);
        self.m
            .write_obj(RawDescriptor::from(d), GuestAddress(addr))
            .unwrap();
    }

    pub fn avail_idx(&self) -> u16 {
        self.m
            .read_obj(GuestAddress(self.avail_addr().0 + 2))
            .unwrap()
    }

    pub fn set_avail_idx(&self, idx: u16) {
        self.m
            .write_obj(idx, GuestAddress(self.avail_addr().0 + 2))
            .unwrap();
    }

    pub fn set_avail_entry(&self, position: u16, head: u16) {
        let addr = self.avail_addr().0 + 4 + 2 * u64::from(position % QSIZE);
        self.m.write_obj(head, GuestAddress(addr)).unwrap();
    }

    /// Makes the chain at `head` available.
    pub fn push_avail(&self, head: u16) {
        let idx = self.avail_idx();
        self.set_avail_entry(idx, head);
        self.set_avail_idx(idx.wrapping_add(1));
    }

    pub fn used_idx(&self) -> u16 {
        self.m
            .read_obj(GuestAddress(self.used_addr().0 + 2))
            .unwrap()
    }

    /// Used ring entries so far, as (head, len).
    pub fn used(&self) -> Vec<(u32, u32)> {
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
    pub fn create_queue(&self) -> Queue {
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

/// A raw image of `sectors` sectors filled with a pattern; returns its content too.
pub fn image(sectors: u64) -> (TempFile, Vec<u8>) {
    let f = TempFile::new_with_prefix("/tmp/sv-blk-test").unwrap();
    let data: Vec<u8> = (0..sectors as usize * 512)
        .map(|i| (i as u8) ^ ((i / 512) as u8).wrapping_mul(13))
        .collect();
    std::fs::write(f.as_path(), &data).unwrap();
    (f, data)
}

/// Where a request's buffers live: an 8 KiB area per head descriptor index.
pub struct Placed {
    pub status: GuestAddress,
    pub data: GuestAddress,
}

fn area(head: u16) -> u64 {
    0x10_0000 + u64::from(head) * 0x2000
}

/// Writes a request of `request_type` at `sector` with one data buffer of `len` bytes
/// (device-writable if `write`), into descriptors `head..` and the avail ring.
pub fn put_request(
    m: &GuestMemoryMmap,
    vq: &TestQueue<'_>,
    head: u16,
    request_type: u32,
    sector: u64,
    data: Option<(u32, bool)>,
) -> Placed {
    let base = area(head);
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&request_type.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    m.write_slice(&h, GuestAddress(base)).unwrap();
    let status = GuestAddress(base + 0x20);
    m.write_obj(0xffu8, status).unwrap();
    let data_addr = GuestAddress(base + 0x100);
    let mut descs = vec![(base, 16, 0)];
    if let Some((len, write)) = data {
        descs.push((data_addr.0, len, if write { WRITE } else { 0 }));
    }
    descs.push((status.0, 1, WRITE));
    let n = descs.len();
    for (i, (addr, len, flags)) in descs.into_iter().enumerate() {
        let next = head + i as u16 + 1;
        let flags = if i + 1 < n { flags | NEXT } else { flags };
        vq.set_desc(head + i as u16, Descriptor::new(addr, len, flags, next));
    }
    vq.push_avail(head);
    Placed {
        status,
        data: data_addr,
    }
}

pub fn status_of(m: &GuestMemoryMmap, p: &Placed) -> u8 {
    m.read_obj(p.status).unwrap()
}

pub fn read_guest(m: &GuestMemoryMmap, addr: GuestAddress, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    m.read_slice(&mut v, addr).unwrap();
    v
}

/// Waits up to `timeout` for `evt` to be signalled and reads its count.
pub fn wait(evt: &EventFd, timeout: Duration) -> Option<u64> {
    let mut fds = [libc::pollfd {
        fd: evt.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as libc::c_int) };
    if r == 1 {
        evt.read().ok()
    } else {
        None
    }
}

pub const SECOND: Duration = Duration::from_secs(5);

/// Waits until `f` holds, for up to five seconds.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + SECOND;
    while std::time::Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Names of this process's threads.
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}
