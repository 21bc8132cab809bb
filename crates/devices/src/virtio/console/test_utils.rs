//! A pretend guest driver for the console tests: guest memory, split queues laid out in it,
//! chains of buffers, clients on the console socket, and waits.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

pub const QSIZE: u16 = 16;
/// Where the receiveq and the transmitq live (0x3000 bytes each).
pub const RX_RING: u64 = 0x1_0000;
pub const TX_RING: u64 = 0x2_0000;
const NEXT: u16 = 1;
const WRITE: u16 = 2;

pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

/// A split queue of `QSIZE` entries at `base`: descriptors, then the driver area at +0x1000
/// and the device area at +0x2000.
pub struct Ring<'a> {
    m: &'a GuestMemoryMmap,
    base: u64,
}

impl<'a> Ring<'a> {
    /// A new, empty queue.
    pub fn new(m: &'a GuestMemoryMmap, base: u64) -> Self {
        m.write_slice(&[0u8; 0x3000], GuestAddress(base)).unwrap();
        Self { m, base }
    }

    /// The queue already at `base`, as it is.
    pub fn attach(m: &'a GuestMemoryMmap, base: u64) -> Self {
        Self { m, base }
    }

    fn avail(&self) -> u64 {
        self.base + 0x1000
    }

    fn used_ring(&self) -> u64 {
        self.base + 0x2000
    }

    pub fn set_desc(&self, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = self.base + 16 * u64::from(index % QSIZE);
        let d = Descriptor::new(addr, len, flags, next);
        self.m
            .write_obj(RawDescriptor::from(d), GuestAddress(at))
            .unwrap();
    }

    pub fn avail_idx(&self) -> u16 {
        self.m.read_obj(GuestAddress(self.avail() + 2)).unwrap()
    }

    pub fn set_avail_idx(&self, idx: u16) {
        self.m
            .write_obj(idx, GuestAddress(self.avail() + 2))
            .unwrap();
    }

    /// Makes the chain at `head` available (no notification).
    pub fn publish(&self, head: u16) {
        let idx = self.avail_idx();
        let at = self.avail() + 4 + 2 * u64::from(idx % QSIZE);
        self.m.write_obj(head, GuestAddress(at)).unwrap();
        self.set_avail_idx(idx.wrapping_add(1));
    }

    /// Writes a chain of `(addr, len, device_writable)` buffers at descriptors `head..` and
    /// publishes it.
    pub fn chain(&self, head: u16, bufs: &[(u64, u32, bool)]) {
        for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
            let i = i as u16;
            let mut flags = if writable { WRITE } else { 0 };
            if usize::from(i) + 1 < bufs.len() {
                flags |= NEXT;
            }
            let next = (head + i + 1) % QSIZE;
            self.set_desc(head + i, addr, len, flags, next);
        }
        self.publish(head);
    }

    pub fn used_idx(&self) -> u16 {
        self.m.read_obj(GuestAddress(self.used_ring() + 2)).unwrap()
    }

    /// Used ring entries so far, as (head, len).
    pub fn used(&self) -> Vec<(u32, u32)> {
        (0..self.used_idx())
            .map(|i| {
                let at = self.used_ring() + 4 + 8 * u64::from(i % QSIZE);
                let id: u32 = self.m.read_obj(GuestAddress(at)).unwrap();
                let len: u32 = self.m.read_obj(GuestAddress(at + 4)).unwrap();
                (id, len)
            })
            .collect()
    }

    /// The queue a transport would hand over.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(QSIZE).unwrap();
        q.set_size(QSIZE);
        q.try_set_desc_table_address(GuestAddress(self.base))
            .unwrap();
        q.try_set_avail_ring_address(GuestAddress(self.avail()))
            .unwrap();
        q.try_set_used_ring_address(GuestAddress(self.used_ring()))
            .unwrap();
        q.set_ready(true);
        q
    }
}

/// Puts `data` at guest address `addr`; returns the address.
pub fn put_data(m: &GuestMemoryMmap, addr: u64, data: &[u8]) -> u64 {
    m.write_slice(data, GuestAddress(addr)).unwrap();
    addr
}

pub fn read_guest(m: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    m.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// `n` bytes of a pattern that repeats only every 251 bytes.
pub fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// A socket path of its own for each test.
pub fn socket_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("sv-console-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// A client of the console socket with a read timeout.
pub fn connect(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Reads from `s` until `n` bytes arrived or five seconds passed.
pub fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let until = Instant::now() + SECOND;
    let mut buf = vec![0u8; 65536];
    while out.len() < n && Instant::now() < until {
        match s.read(&mut buf[..(n - out.len()).min(65536)]) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    out
}

/// Reads from `s` until the end of the stream (or an error); five seconds at most.
pub fn read_to_end(s: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let until = Instant::now() + SECOND;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return out,
        }
    }
    panic!("the stream did not end");
}

pub fn send(s: &mut UnixStream, data: &[u8]) {
    s.write_all(data).unwrap();
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
    let until = Instant::now() + SECOND;
    while Instant::now() < until {
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
