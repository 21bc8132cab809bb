//! A pretend guest driver for the vsock tests: the console's rings and waits, three queues,
//! and packets in guest memory.

use super::packet::{Header, HDR_LEN, HOST_CID, TYPE_STREAM};
pub use crate::virtio::console::test_utils::*;
use vm_memory::GuestMemoryMmap;

/// The shared pretend-driver queue, with the console's chains.
pub type Ring<'a> = TestQueue<'a>;

/// The event queue's ring (the console's tests use the first two).
pub const EVT_RING: u64 = 0x3_0000;

/// The guest's CID in the tests.
pub const GUEST_CID: u64 = 3;

/// A packet header from the guest to the host.
pub fn guest_hdr(op: u16, src_port: u32, dst_port: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc: 256 * 1024,
        ..Header::default()
    }
}

/// The packet at guest address `addr`: header and `len - HDR_LEN` bytes of payload.
pub fn read_packet(m: &GuestMemoryMmap, addr: u64, len: u32) -> (Header, Vec<u8>) {
    let raw = read_guest(m, addr, len as usize);
    let mut h = [0u8; HDR_LEN];
    h.copy_from_slice(&raw[..HDR_LEN]);
    (Header::parse(&h), raw[HDR_LEN..].to_vec())
}
