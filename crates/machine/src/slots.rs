//! The machine's virtio-mmio slot table: every virtio device, of every kind, sits behind the
//! same transport in one slot of this table, which gives it its MMIO window, its IRQ and its
//! `virtio_mmio.device=` entry on the kernel command line.
//!
//! Slots are laid out from boot, in this order: six disk slots (StratoVirt's limit of six
//! disks, hot-plugged ones included; the first boot disk is `vda`), two NIC slots (`eth0`,
//! `eth1`), then the other devices the configuration asks for (at most two). Disk and NIC slots
//! exist whether or not anything is in them; hot-plug ([`crate::hotplug`]) fills and empties
//! them while the guest runs.

use crate::hotplug::SlotHandle;
use crate::layout::{VIRTIO_IRQS, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};
use devices::virtio::{
    mmio_cmdline_entry, MmioTransport, TransportState, VirtioDevice, MMIO_QUEUE_NOTIFY_OFFSET,
    MMIO_WINDOW_SIZE,
};
use devices::Bus;
use kvm_ioctls::{IoEventAddress, VmFd};
use std::sync::{Arc, Mutex};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Number of disk slots.
pub const DISK_SLOTS: usize = 6;
/// Number of NIC slots.
pub const NIC_SLOTS: usize = 2;
/// Number of virtio transports a VM can have.
pub const MAX_SLOTS: usize = VIRTIO_IRQS.len();
// Disks, NICs and the two other devices StratoVirt allows all get a transport.
const _: () = assert!(DISK_SLOTS + NIC_SLOTS + 2 <= MAX_SLOTS);

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotKind {
    /// A virtio-blk device; hot-pluggable.
    Disk,
    /// A virtio-net device; hot-pluggable.
    Nic,
    /// Any other device (console, vsock, balloon), present from boot to exit.
    Fixed,
}

/// Where transport `index` lives: (MMIO base, IRQ).
pub fn transport_location(index: usize) -> (u64, u32) {
    (
        VIRTIO_MMIO_BASE + index as u64 * VIRTIO_MMIO_SIZE,
        VIRTIO_IRQS[index],
    )
}

/// One slot.
#[derive(Clone)]
pub struct Slot {
    /// The transport's index in the table (MMIO window and IRQ order).
    pub index: usize,
    pub kind: SlotKind,
    /// The slot's index among the slots of its kind (QMP's `addr`: 0x0 is vda, or eth0).
    pub kind_index: usize,
    pub base: u64,
    pub irq: u32,
    /// The device's handle, for hot-plug (disks, NICs) and for flushing at exit.
    pub handle: SlotHandle,
    /// The transport (registers and device), for snapshots; None only in unit tests.
    pub transport: Option<Arc<Mutex<MmioTransport>>>,
}

/// Every virtio slot of a VM, in transport order. Cloning shares the devices' handles.
#[derive(Clone, Default)]
pub struct SlotTable {
    slots: Vec<Slot>,
}

impl SlotTable {
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The slots of one kind, in `kind_index` order.
    pub fn of_kind(&self, kind: SlotKind) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(move |s| s.kind == kind)
    }

    /// The slot of `kind` with QMP address `kind_index`.
    pub fn get(&self, kind: SlotKind, kind_index: usize) -> Option<&Slot> {
        self.of_kind(kind).nth(kind_index)
    }

    /// The kernel command-line entries announcing every transport.
    pub fn cmdline_entries(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| mmio_cmdline_entry(s.base, MMIO_WINDOW_SIZE, s.irq))
            .collect()
    }

    /// Flushes every attached disk (at exit, so no acknowledged write is lost).
    pub fn flush_all(&self) {
        for s in &self.slots {
            if let Err(e) = s.handle.flush() {
                log::error!("flushing the device in slot {}: {e}", s.index);
            }
        }
    }

    /// Puts `device` behind a new transport in the next slot (the transport as a snapshot
    /// saved it, given `restore`): wires its irqfd and its queue notifications into KVM and its
    /// window onto `mmio`.
    #[allow(clippy::too_many_arguments)]
    pub fn attach(
        &mut self,
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        mmio: &mut Bus,
        kind: SlotKind,
        device: Box<dyn VirtioDevice>,
        handle: SlotHandle,
        restore: Option<&TransportState>,
    ) -> Result<&Slot, String> {
        let index = self.slots.len();
        if index >= MAX_SLOTS {
            return Err(format!("a VM has at most {MAX_SLOTS} virtio devices"));
        }
        let (base, irq) = transport_location(index);
        let irqfd =
            EventFd::new(libc::EFD_NONBLOCK).map_err(|e| format!("virtio irq eventfd: {e}"))?;
        vm.register_irqfd(&irqfd, irq)
            .map_err(|e| format!("register irqfd for IRQ {irq}: {e}"))?;
        let transport = match restore {
            None => MmioTransport::new(mem.clone(), device, irqfd).map_err(|e| e.to_string()),
            Some(state) => MmioTransport::restore(mem.clone(), device, irqfd, state),
        }
        .map_err(|e| format!("virtio-mmio transport at 0x{base:x}: {e}"))?;
        for (i, evt) in transport.queue_evts().iter().enumerate() {
            vm.register_ioevent(
                evt,
                &IoEventAddress::Mmio(base + MMIO_QUEUE_NOTIFY_OFFSET),
                i as u32,
            )
            .map_err(|e| format!("register ioeventfd at 0x{base:x}: {e}"))?;
        }
        let transport = Arc::new(Mutex::new(transport));
        mmio.insert(transport.clone(), base, MMIO_WINDOW_SIZE)
            .map_err(|e| e.to_string())?;
        Ok(self.push(kind, handle, Some(transport)))
    }

    /// Records the next slot, at the next transport location.
    fn push(
        &mut self,
        kind: SlotKind,
        handle: SlotHandle,
        transport: Option<Arc<Mutex<MmioTransport>>>,
    ) -> &Slot {
        let index = self.slots.len();
        let (base, irq) = transport_location(index);
        let kind_index = self.of_kind(kind).count();
        self.slots.push(Slot {
            index,
            kind,
            kind_index,
            base,
            irq,
            handle,
            transport,
        });
        &self.slots[index]
    }

    /// A table of handles without transports, for unit tests of what works on handles alone.
    #[cfg(test)]
    pub fn for_tests(handles: Vec<(SlotKind, SlotHandle)>) -> Self {
        let mut t = SlotTable::default();
        for (kind, handle) in handles {
            t.push(kind, handle, None);
        }
        t
    }
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
        let last = transport_location(MAX_SLOTS - 1).0;
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
