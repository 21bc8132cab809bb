//! A pretend guest driver for the block tests: guest memory, a mock split queue in it, request
//! chains and images. The queue and the waits are the shared ones.

pub(crate) use crate::virtio::test_queue::{TestQueue, QSIZE};
use crate::virtio::test_queue::{NEXT, WRITE};
pub(crate) use crate::virtio::test_wait::{eventually, thread_names, wait, SECOND};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::tempfile::TempFile;

/// Where the one queue lives.
pub const QUEUE_BASE: u64 = 0x1_0000;

pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
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
