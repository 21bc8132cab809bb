//! The attach steps that build a machine's virtio devices into its slot table, one per kind of
//! device; booting runs them in the slot order [`crate::slots`] describes.

use crate::hotplug::SlotHandle;
use crate::slots::{SlotKind, SlotTable, DISK_SLOTS};
use config::DriveConfig;
use devices::virtio::block::{Block, BlockBackend};
use devices::Bus;
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

/// Opens the boot disks and creates the six disk slots; boot disks fill slots in order, so the
/// first is `vda`. Returns each slot's device id (None for an empty slot).
pub fn attach_disk_slots(
    table: &mut SlotTable,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    drives: &[DriveConfig],
) -> Result<Vec<Option<String>>, String> {
    let mut ids = Vec::new();
    for index in 0..DISK_SLOTS {
        let drive = drives.get(index);
        let disk = match drive {
            Some(d) => Some((
                BlockBackend::open(&d.path, d.read_only, d.direct).map_err(|e| e.to_string())?,
                d.serial.as_deref().unwrap_or(""),
            )),
            None => None,
        };
        if let Some(d) = drive {
            log::info!(
                "disk {} ({}) in slot {index}{}",
                d.id,
                d.path.display(),
                if d.read_only { ", read-only" } else { "" }
            );
        }
        let block = Block::new(index, disk);
        let handle = SlotHandle::Disk(block.handle());
        table.attach(vm, mem, mmio, SlotKind::Disk, Box::new(block), handle)?;
        ids.push(drive.map(|d| d.id.clone()));
    }
    Ok(ids)
}
