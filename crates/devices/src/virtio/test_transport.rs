//! The pretend guest driver's side of a real MMIO transport, for the device tests: register
//! reads and writes, and Linux's virtio-mmio probe.

use super::test_queue::{TestQueue, QSIZE};
use super::{MmioTransport, VirtioDevice};
use crate::bus::BusDevice;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const STATUS: u64 = 0x70;

/// A transport for `device`, with an irqfd of its own.
pub(crate) fn transport(m: &GuestMemoryMmap, device: impl VirtioDevice + 'static) -> MmioTransport {
    MmioTransport::new(
        m.clone(),
        Box::new(device),
        EventFd::new(EFD_NONBLOCK).unwrap(),
    )
    .unwrap()
}

pub(crate) fn r(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut b = [0; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

pub(crate) fn w(t: &mut MmioTransport, offset: u64, v: u32) {
    t.write(offset, &v.to_le_bytes());
}

/// The features the device offers, low word first.
pub(crate) fn features(t: &mut MmioTransport) -> u64 {
    w(t, 0x14, 0);
    let lo = r(t, 0x10);
    w(t, 0x14, 1);
    u64::from(r(t, 0x10)) << 32 | u64::from(lo)
}

/// Linux's probe from ACKNOWLEDGE on: accepts what `accept` returns (asked after DRIVER),
/// sets up one queue per entry of `queues` (indexes 0, 1, ..., each expected to offer `max`
/// entries) and sets DRIVER_OK.
pub(crate) fn probe(
    t: &mut MmioTransport,
    accept: impl FnOnce(&mut MmioTransport) -> u64,
    max: u16,
    queues: &[&TestQueue<'_>],
) {
    w(t, STATUS, 1);
    w(t, STATUS, 3);
    let f = accept(t);
    w(t, 0x24, 0);
    w(t, 0x20, f as u32);
    w(t, 0x24, 1);
    w(t, 0x20, (f >> 32) as u32);
    w(t, STATUS, 0xb);
    assert_eq!(r(t, STATUS), 0xb, "FEATURES_OK kept");
    for (i, q) in queues.iter().enumerate() {
        w(t, 0x30, i as u32);
        assert_eq!(r(t, 0x34), u32::from(max), "queue {i} exists");
        w(t, 0x38, u32::from(QSIZE));
        w(t, 0x80, q.desc_table_addr().0 as u32);
        w(t, 0x84, 0);
        w(t, 0x90, q.avail_addr().0 as u32);
        w(t, 0x94, 0);
        w(t, 0xa0, q.used_addr().0 as u32);
        w(t, 0xa4, 0);
        w(t, 0x44, 1);
    }
    w(t, STATUS, 0xf);
    assert!(t.is_activated(), "DRIVER_OK accepted");
}
