//! A pretend guest driver for the console tests: guest memory, split queues laid out in it,
//! chains of buffers, clients on the console socket, and waits.

use crate::virtio::test_queue::WRITE;
pub(crate) use crate::virtio::test_queue::{TestQueue, QSIZE};
pub(crate) use crate::virtio::test_wait::{eventually, thread_names, wait, SECOND};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Where the receiveq and the transmitq live (0x3000 bytes each).
pub const RX_RING: u64 = 0x1_0000;
pub const TX_RING: u64 = 0x2_0000;

pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
}

/// The console tests' chains, on the shared test queue.
pub trait ConsoleChains {
    /// Writes a chain of `(addr, len, device_writable)` buffers at descriptors `head..` and
    /// publishes it.
    fn chain(&self, head: u16, bufs: &[(u64, u32, bool)]);
}

impl ConsoleChains for TestQueue<'_> {
    fn chain(&self, head: u16, bufs: &[(u64, u32, bool)]) {
        let bufs: Vec<_> = bufs
            .iter()
            .map(|&(addr, len, writable)| (addr, len, if writable { WRITE } else { 0 }))
            .collect();
        self.put_chain(head, &bufs);
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
