//! A pretend guest driver for the net tests: guest memory, split queues laid out in it, receive
//! and transmit chains, and a TAP pair made of a socketpair where no TAP can be made.

use std::time::Duration;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const QSIZE: u16 = 16;
pub const NEXT: u16 = 1;
pub const WRITE: u16 = 2;
/// Queue areas: receive at RXQ, transmit at TXQ; buffers from 0x20_0000.
pub const RXQ: u64 = 0x1_0000;
pub const TXQ: u64 = 0x4_0000;

pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
}

/// A split queue of QSIZE entries at `base`: descriptors, then the avail ring a page on, the
/// used ring a page after that.
pub struct TestQueue<'a> {
    m: &'a GuestMemoryMmap,
    base: u64,
}

impl<'a> TestQueue<'a> {
    pub fn new(m: &'a GuestMemoryMmap, base: u64) -> Self {
        m.write_slice(&[0u8; 0x3000], GuestAddress(base)).unwrap();
        Self { m, base }
    }

    pub fn desc_table_addr(&self) -> GuestAddress {
        GuestAddress(self.base)
    }

    pub fn avail_addr(&self) -> GuestAddress {
        GuestAddress(self.base + 0x1000)
    }

    pub fn used_addr(&self) -> GuestAddress {
        GuestAddress(self.base + 0x2000)
    }

    pub fn set_desc(&self, index: u16, d: Descriptor) {
        let addr = self.base + 16 * u64::from(index);
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

    /// Makes the chain at `head` available.
    pub fn push_avail(&self, head: u16) {
        let idx = self.avail_idx();
        let addr = self.avail_addr().0 + 4 + 2 * u64::from(idx % QSIZE);
        self.m.write_obj(head, GuestAddress(addr)).unwrap();
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

    /// A one-descriptor receive buffer of `len` bytes at `addr`, as chain `head`.
    pub fn rx_buffer(&self, head: u16, addr: u64, len: u32) {
        self.set_desc(head, Descriptor::new(addr, len, WRITE, 0));
        self.push_avail(head);
    }

    /// A transmit chain at `head..`: `parts` (address, bytes) written into guest memory.
    pub fn tx_frame(&self, head: u16, parts: &[(u64, &[u8])]) {
        for (i, (addr, bytes)) in parts.iter().enumerate() {
            self.m.write_slice(bytes, GuestAddress(*addr)).unwrap();
            let last = i + 1 == parts.len();
            let flags = if last { 0 } else { NEXT };
            self.set_desc(
                head + i as u16,
                Descriptor::new(*addr, bytes.len() as u32, flags, head + i as u16 + 1),
            );
        }
        self.push_avail(head);
    }
}

pub fn read_guest(m: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    m.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// A frame as the TAP hands it over: a header (flags, gso type, ... all zero but the
/// `num_buffers` the device fills in) and `data`.
pub fn tap_frame(data: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; super::tap::VNET_HDR_LEN];
    f.extend_from_slice(data);
    f
}

/// Bytes that differ from frame to frame.
pub fn payload(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
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

/// A TAP stand-in and its other end (the "host network"): a `SOCK_SEQPACKET` socketpair.
pub fn tap_pair(name: &str) -> (super::tap::Tap, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into `fds`.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    // SAFETY: the device end is made non-blocking, as a TAP is opened.
    unsafe { libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK) };
    // SAFETY: both descriptors were just created and are owned here.
    let (a, b) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    (super::tap::Tap::stand_in(a, name), b)
}

/// Reads one frame from the "host network" end, waiting up to `timeout`.
pub fn host_recv(peer: &std::fs::File, timeout: Duration) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut fds = [libc::pollfd {
        fd: peer.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
    if unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as i32) } != 1 {
        return None;
    }
    let mut buf = vec![0u8; 70000];
    // SAFETY: reads at most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::read(
            peer.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
        )
    };
    assert!(n >= 0);
    buf.truncate(n as usize);
    Some(buf)
}

/// Sends one frame from the "host network" end.
pub fn host_send(peer: &std::fs::File, frame: &[u8]) {
    use std::os::fd::AsRawFd;
    // SAFETY: writes `frame` from a valid buffer.
    let n = unsafe {
        libc::write(
            peer.as_raw_fd(),
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
        )
    };
    assert_eq!(n as usize, frame.len());
}

/// Waits up to `timeout` for `evt` to be signalled and reads its count.
pub fn wait(evt: &vmm_sys_util::eventfd::EventFd, timeout: Duration) -> Option<u64> {
    use std::os::fd::AsRawFd;
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

/// Names of this process's threads.
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}
