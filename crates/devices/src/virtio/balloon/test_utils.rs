//! A pretend guest driver for the balloon tests: guest RAM with a hole, split queues laid out
//! in it, a transport driven as Linux's virtio-mmio probe does, and chains of page frames,
//! ranges and statistics.

use crate::bus::BusDevice;
pub(crate) use crate::virtio::test_queue::{TestQueue, QSIZE, WRITE};
use crate::virtio::test_transport::probe;
pub(crate) use crate::virtio::test_transport::{r, transport, w};
pub(crate) use crate::virtio::test_wait::{eventually, thread_names, wait, SECOND};
use crate::virtio::MmioTransport;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub const MIB: u64 = 1 << 20;
/// Guest RAM: 8 MiB at 0 and 8 MiB at 16 MiB; 8..16 MiB is a hole.
pub const LOW: u64 = 8 * MIB;
pub const HIGH: u64 = 16 * MIB;
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

/// Where queue `index` lives: 16 KiB apart from 64 KiB.
pub fn ring(index: u64) -> u64 {
    0x1_0000 + index * 0x4000
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

pub fn offered(t: &mut MmioTransport) -> u64 {
    w(t, 0x14, 1);
    let hi = r(t, 0x10);
    w(t, 0x14, 0);
    u64::from(hi) << 32 | u64::from(r(t, 0x10))
}

/// Linux's probe: accepts `features` (VERSION_1 added), sets up one queue per entry of
/// `queues` (indexes 0, 1, ...) and starts the device.
pub fn start(t: &mut MmioTransport, features: u64, queues: &[&TestQueue<'_>]) {
    probe(t, |_| features | (1 << 32), 256, queues);
}

/// Notifies queue `index` (as the ioeventfd would).
pub fn kick(t: &mut MmioTransport, index: u32) {
    w(t, 0x50, index);
}

/// Writes `actual` (pages) into the configuration space.
pub fn write_actual(t: &mut MmioTransport, pages: u32) {
    t.write(0x104, &pages.to_le_bytes());
}
