//! A pretend guest driver for the block tests: guest memory, a mock split queue in it, request
//! chains and eventfd waits.

use std::os::fd::AsRawFd;
use std::time::Duration;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
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

pub fn mock_queue(m: &GuestMemoryMmap) -> MockSplitQueue<'_, GuestMemoryMmap> {
    MockSplitQueue::create(m, GuestAddress(QUEUE_BASE), QSIZE)
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
    vq: &MockSplitQueue<'_, GuestMemoryMmap>,
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
    let raw: Vec<RawDescriptor> = descs
        .into_iter()
        .enumerate()
        .map(|(i, (addr, len, flags))| {
            let next = head + i as u16 + 1;
            let flags = if i + 1 < n { flags | NEXT } else { flags };
            RawDescriptor::from(Descriptor::new(addr, len, flags, next))
        })
        .collect();
    vq.add_desc_chains(&raw, head).unwrap();
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

/// Used ring entries so far, as (head, len).
pub fn used(vq: &MockSplitQueue<'_, GuestMemoryMmap>) -> Vec<(u32, u32)> {
    let idx = vq.used().idx().load();
    (0..idx)
        .map(|i| {
            let e = vq
                .used()
                .ring()
                .ref_at(usize::from(i % QSIZE))
                .unwrap()
                .load();
            (e.id(), e.len())
        })
        .collect()
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
