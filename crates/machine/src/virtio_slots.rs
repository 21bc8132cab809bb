//! The virtio-mmio transports that exist from boot: six virtio-blk slots (StratoVirt's limit of
//! six disks, hot-plugged ones included), each announced to the guest on the kernel command line
//! whether or not a disk is in it. Boot-time disks fill slots in order, so the first is `vda`.

use crate::layout::{VIRTIO_IRQS, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};
use config::DriveConfig;
use devices::virtio::block::{Block, BlockBackend, BlockHandle};
use devices::virtio::{
    mmio_cmdline_entry, MmioTransport, MMIO_QUEUE_NOTIFY_OFFSET, MMIO_WINDOW_SIZE,
};
use devices::Bus;
use kvm_ioctls::{IoEventAddress, VmFd};
use std::sync::{Arc, Mutex};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Number of virtio-blk slots.
pub const BLOCK_SLOTS: usize = 6;

/// Where transport `index` lives: (MMIO base, IRQ).
pub fn transport_location(index: usize) -> (u64, u32) {
    (
        VIRTIO_MMIO_BASE + index as u64 * VIRTIO_MMIO_SIZE,
        VIRTIO_IRQS[index],
    )
}

/// The block slots of a VM, for hot-plug and for flushing at exit.
#[derive(Clone, Default)]
pub struct BlockSlots {
    pub slots: Vec<BlockHandle>,
}

impl BlockSlots {
    /// Flushes every attached disk (at exit, so no acknowledged write is lost).
    pub fn flush_all(&self) {
        for s in &self.slots {
            if s.is_attached() {
                if let Err(e) = s.flush() {
                    log::error!("flushing disk in slot {}: {e}", s.index());
                }
            }
        }
    }
}

/// Opens the boot disks, creates the six block transports on `mmio`, wires their ioeventfds
/// and irqfds, and returns the slots with the kernel command-line entries announcing them.
pub fn create_block_slots(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    drives: &[DriveConfig],
) -> Result<(BlockSlots, Vec<String>), String> {
    let mut slots = BlockSlots::default();
    let mut cmdline = Vec::new();
    for index in 0..BLOCK_SLOTS {
        let disk = match drives.get(index) {
            Some(d) => Some((
                BlockBackend::open(&d.path, d.read_only, d.direct).map_err(|e| e.to_string())?,
                d.serial.as_deref().unwrap_or(""),
            )),
            None => None,
        };
        if let (Some(d), Some(_)) = (drives.get(index), &disk) {
            log::info!(
                "disk {} ({}) in slot {index}{}",
                d.id,
                d.path.display(),
                if d.read_only { ", read-only" } else { "" }
            );
        }
        let block = Block::new(index, disk);
        slots.slots.push(block.handle());
        let (base, irq) = transport_location(index);
        attach_transport(vm, mem, mmio, Box::new(block), base, irq)?;
        cmdline.push(mmio_cmdline_entry(base, MMIO_WINDOW_SIZE, irq));
    }
    Ok((slots, cmdline))
}

fn attach_transport(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    device: Box<dyn devices::virtio::VirtioDevice>,
    base: u64,
    irq: u32,
) -> Result<(), String> {
    let irqfd = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| format!("virtio irq eventfd: {e}"))?;
    vm.register_irqfd(&irqfd, irq)
        .map_err(|e| format!("register irqfd for IRQ {irq}: {e}"))?;
    let transport = MmioTransport::new(mem.clone(), device, irqfd)
        .map_err(|e| format!("virtio-mmio transport at 0x{base:x}: {e}"))?;
    for (i, evt) in transport.queue_evts().iter().enumerate() {
        vm.register_ioevent(
            evt,
            &IoEventAddress::Mmio(base + MMIO_QUEUE_NOTIFY_OFFSET),
            i as u32,
        )
        .map_err(|e| format!("register ioeventfd at 0x{base:x}: {e}"))?;
    }
    mmio.insert(Arc::new(Mutex::new(transport)), base, MMIO_WINDOW_SIZE)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_sit_in_the_mmio_hole_with_their_own_irqs() {
        use crate::layout::*;
        let (b0, i0) = transport_location(0);
        let (b5, i5) = transport_location(5);
        assert_eq!((b0, i0), (0xd000_0000, 5));
        assert_eq!((b5, i5), (0xd000_5000, 11));
        let last = transport_location(VIRTIO_IRQS.len() - 1).0;
        assert!(last + VIRTIO_MMIO_SIZE < IOAPIC_ADDR);
        let legacy = [0, 2, I8042_KBD_IRQ, SERIAL_IRQ, RTC_IRQ, I8042_AUX_IRQ];
        let mut seen = std::collections::HashSet::new();
        for irq in VIRTIO_IRQS {
            assert!(irq < 16, "IRQ {irq}: an ISA line");
            assert!(
                !legacy.contains(&irq),
                "IRQ {irq} belongs to a legacy device"
            );
            assert!(seen.insert(irq), "IRQ {irq} given twice");
        }
    }
}
