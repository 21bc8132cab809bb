//! A pretend guest driver for the balloon tests: guest RAM with a hole, split queues laid out
//! in it, a transport driven as Linux's virtio-mmio probe does, and chains of page frames,
//! ranges and statistics.

use super::Balloon;
use crate::bus::BusDevice;
use crate::virtio::MmioTransport;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub const MIB: u64 = 1 << 20;
/// Guest RAM: 8 MiB at 0 and 8 MiB at 16 MiB; 8..16 MiB is a hole.
pub const LOW: u64 = 8 * MIB;
pub const HIGH: u64 = 16 * MIB;
pub const QSIZE: u16 = 16;
const NEXT: u16 = 1;
pub const WRITE: u16 = 2;
/// Buffers the driver builds (page frame arrays, statistics), below the pages it gives.
pub const BUFFERS: u64 = 0x8_0000;

pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), LOW as usize),
        (GuestAddress(HIGH), (8 * MIB) as usize),
    ])
    .unwrap()
}

pub fn frame(addr: u64) -> u32 {
    (addr >> 12) as u32
}

/// One split queue at `base` (descriptors, driver area at +4 KiB, device area at +8 KiB).
pub struct TestQueue<'a> {
    m: &'a GuestMemoryMmap,
    base: u64,
    next_desc: u16,
}

impl<'a> TestQueue<'a> {
    pub fn new(m: &'a GuestMemoryMmap, index: u64) -> Self {
        let base = 0x1_0000 + index * 0x4000;
        m.write_slice(&[0u8; 0x3000], GuestAddress(base)).unwrap();
        Self {
            m,
            base,
            next_desc: 0,
        }
    }

    pub fn desc_table(&self) -> u64 {
        self.base
    }
    pub fn avail(&self) -> u64 {
        self.base + 0x1000
    }
    pub fn used(&self) -> u64 {
        self.base + 0x2000
    }

    fn avail_idx(&self) -> u16 {
        self.m.read_obj(GuestAddress(self.avail() + 2)).unwrap()
    }

    pub fn set_avail_idx(&self, idx: u16) {
        self.m
            .write_obj(idx, GuestAddress(self.avail() + 2))
            .unwrap();
    }

    pub fn set_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.desc_table() + 16 * u64::from(index % QSIZE);
        let d = Descriptor::new(addr, len, flags, next);
        self.m
            .write_obj(RawDescriptor::from(d), GuestAddress(at))
            .unwrap();
    }

    /// Makes the chain at `head` available.
    pub fn push_avail(&self, head: u16) {
        let idx = self.avail_idx();
        let at = self.avail() + 4 + 2 * u64::from(idx % QSIZE);
        self.m.write_obj(head, GuestAddress(at)).unwrap();
        self.set_avail_idx(idx.wrapping_add(1));
    }

    /// Writes a chain of `bufs` (address, length, flags) and makes it available; its head.
    pub fn chain(&mut self, bufs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next_desc;
        for (i, &(addr, len, flags)) in bufs.iter().enumerate() {
            let idx = (head + i as u16) % QSIZE;
            let last = i + 1 == bufs.len();
            let flags = if last { flags } else { flags | NEXT };
            self.set_desc(idx, addr, len, flags, (idx + 1) % QSIZE);
        }
        self.next_desc = (head + bufs.len() as u16) % QSIZE;
        self.push_avail(head);
        head
    }

    pub fn used_idx(&self) -> u16 {
        self.m.read_obj(GuestAddress(self.used() + 2)).unwrap()
    }

    /// Used entries so far, as (head, len).
    pub fn used_entries(&self) -> Vec<(u32, u32)> {
        (0..self.used_idx())
            .map(|i| {
                let at = self.used() + 4 + 8 * u64::from(i % QSIZE);
                let id: u32 = self.m.read_obj(GuestAddress(at)).unwrap();
                let len: u32 = self.m.read_obj(GuestAddress(at + 4)).unwrap();
                (id, len)
            })
            .collect()
    }
}

/// Writes `frames` at `at` as the driver's little-endian array; the descriptor for it.
pub fn frame_array(m: &GuestMemoryMmap, at: u64, frames: &[u32]) -> (u64, u32, u16) {
    for (i, f) in frames.iter().enumerate() {
        m.write_obj(*f, GuestAddress(at + 4 * i as u64)).unwrap();
    }
    (at, 4 * frames.len() as u32, 0)
}

/// Writes statistics at `at`; the descriptor for them.
pub fn stats_array(m: &GuestMemoryMmap, at: u64, stats: &[(u16, u64)]) -> (u64, u32, u16) {
    for (i, (tag, val)) in stats.iter().enumerate() {
        let e = at + 10 * i as u64;
        m.write_obj(*tag, GuestAddress(e)).unwrap();
        m.write_obj(*val, GuestAddress(e + 2)).unwrap();
    }
    (at, 10 * stats.len() as u32, 0)
}

/// Puts a recognisable word in `pages` pages from `addr`.
pub fn fill(m: &GuestMemoryMmap, addr: u64, pages: u64) {
    for p in 0..pages {
        m.write_obj(0x5a5a_0000_u64 + p, GuestAddress(addr + p * 4096))
            .unwrap();
    }
}

pub fn word(m: &GuestMemoryMmap, addr: u64) -> u64 {
    m.read_obj(GuestAddress(addr)).unwrap()
}

pub fn r(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut b = [0; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

pub fn w(t: &mut MmioTransport, offset: u64, v: u32) {
    t.write(offset, &v.to_le_bytes());
}

pub fn offered(t: &mut MmioTransport) -> u64 {
    w(t, 0x14, 1);
    let hi = r(t, 0x10);
    w(t, 0x14, 0);
    u64::from(hi) << 32 | u64::from(r(t, 0x10))
}

pub fn transport(m: &GuestMemoryMmap, b: Balloon) -> MmioTransport {
    MmioTransport::new(m.clone(), Box::new(b), EventFd::new(EFD_NONBLOCK).unwrap()).unwrap()
}

/// Linux's probe: accepts `features` (VERSION_1 added), sets up one queue per entry of
/// `queues` (indexes 0, 1, ...) and starts the device.
pub fn start(t: &mut MmioTransport, features: u64, queues: &[&TestQueue<'_>]) {
    w(t, 0x70, 1);
    w(t, 0x70, 3);
    let f = features | (1 << 32);
    w(t, 0x24, 0);
    w(t, 0x20, f as u32);
    w(t, 0x24, 1);
    w(t, 0x20, (f >> 32) as u32);
    w(t, 0x70, 0xb);
    assert_eq!(r(t, 0x70), 0xb, "FEATURES_OK kept");
    for (i, q) in queues.iter().enumerate() {
        w(t, 0x30, i as u32);
        assert_eq!(r(t, 0x34), 256, "queue {i} exists");
        w(t, 0x38, u32::from(QSIZE));
        w(t, 0x80, q.desc_table() as u32);
        w(t, 0x84, 0);
        w(t, 0x90, q.avail() as u32);
        w(t, 0x94, 0);
        w(t, 0xa0, q.used() as u32);
        w(t, 0xa4, 0);
        w(t, 0x44, 1);
    }
    w(t, 0x70, 0xf);
    assert!(t.is_activated(), "DRIVER_OK accepted");
}

/// Notifies queue `index` (as the ioeventfd would).
pub fn kick(t: &mut MmioTransport, index: u32) {
    w(t, 0x50, index);
}

/// Writes `actual` (pages) into the configuration space.
pub fn write_actual(t: &mut MmioTransport, pages: u32) {
    t.write(0x104, &pages.to_le_bytes());
}

/// Waits up to `timeout` for `evt` and reads its count.
pub fn wait(evt: &EventFd, timeout: Duration) -> Option<u64> {
    let mut fds = [libc::pollfd {
        fd: evt.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as libc::c_int) };
    if n == 1 {
        evt.read().ok()
    } else {
        None
    }
}

pub const SECOND: Duration = Duration::from_secs(5);

/// Waits until `f` holds, for up to five seconds.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + SECOND;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}
