//! The attach steps that build a machine's virtio devices into its slot table, one per kind of
//! device; booting runs them in the slot order [`crate::slots`] describes.

use crate::hotplug::SlotHandle;
use crate::slots::{SlotKind, SlotTable, DISK_SLOTS};
use config::{ConsoleConfig, DriveConfig};
use devices::virtio::block::{Block, BlockBackend};
use devices::virtio::console::{Console, ConsoleSocket};
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

/// Creates the console's socket (mode 0600; removed on every exit path from here on) and puts
/// the virtio-console in the next slot; its `console` thread serves the socket from now on, so
/// a client may connect before the guest starts. Returns the device id.
pub fn attach_console(
    table: &mut SlotTable,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    console: &ConsoleConfig,
) -> Result<String, String> {
    let socket = ConsoleSocket::bind(&console.socket_path).map_err(|e| e.to_string())?;
    let file = socket.file();
    sandbox::last_resort::unlink_on_abort(file.path());
    crate::cleanup::on_exit(move || file.remove());
    let device =
        Console::new(socket).map_err(|e| format!("cannot start the console thread: {e}"))?;
    let slot = table.attach(
        vm,
        mem,
        mmio,
        SlotKind::Fixed,
        Box::new(device),
        SlotHandle::Fixed,
    )?;
    log::info!(
        "console {} on socket {} in slot {} (hvc0)",
        console.id,
        console.socket_path.display(),
        slot.index
    );
    Ok(console.id.clone())
}
