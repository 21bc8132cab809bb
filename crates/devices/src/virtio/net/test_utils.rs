//! A pretend guest driver for the net tests: guest memory, split queues laid out in it, receive
//! and transmit chains, and a TAP pair made of a socketpair where no TAP can be made.

pub(crate) use crate::virtio::test_queue::{TestQueue, NEXT, QSIZE, WRITE};
pub(crate) use crate::virtio::test_wait::{eventually, thread_names, wait, SECOND};
use std::time::Duration;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
/// Queue areas: receive at RXQ, transmit at TXQ; buffers from 0x20_0000.
pub const RXQ: u64 = 0x1_0000;
pub const TXQ: u64 = 0x4_0000;

pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap()
}

/// The net tests' chains, on the shared test queue.
pub trait NetChains {
    /// A one-descriptor receive buffer of `len` bytes at `addr`, as chain `head`.
    fn rx_buffer(&self, head: u16, addr: u64, len: u32);
    /// A transmit chain at `head..`: `parts` (address, bytes) written into guest memory.
    fn tx_frame(&self, head: u16, parts: &[(u64, &[u8])]);
}

impl NetChains for TestQueue<'_> {
    fn rx_buffer(&self, head: u16, addr: u64, len: u32) {
        self.set_desc(head, Descriptor::new(addr, len, WRITE, 0));
        self.push_avail(head);
    }

    fn tx_frame(&self, head: u16, parts: &[(u64, &[u8])]) {
        for (i, (addr, bytes)) in parts.iter().enumerate() {
            self.mem().write_slice(bytes, GuestAddress(*addr)).unwrap();
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
