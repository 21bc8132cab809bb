//! The attach steps that build a machine's virtio devices into its slot table, one per kind of
//! device; booting and restoring ([`crate::builder`]) run them in the slot order
//! [`crate::slots`] describes. At a restore each step rebuilds its devices from the
//! configuration, checks them against what the snapshot recorded and hands the transport its
//! saved state.

use crate::hotplug::SlotHandle;
use crate::slots::{SlotKind, SlotTable, DISK_SLOTS};
use crate::snapshot::SlotState;
use config::{BalloonConfig, ConsoleConfig, DriveConfig};
use devices::virtio::balloon::{Balloon, BalloonHandle};
use devices::virtio::block::{Block, BlockBackend, BlockDiskState};
use devices::virtio::console::{Console, ConsoleSocket};
use devices::virtio::DeviceState;
use devices::Bus;
use kvm_ioctls::VmFd;
use std::path::Path;
use vm_memory::GuestMemoryMmap;

fn same_path(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

/// Which drive goes in which disk slot at a restore: where the snapshot had a disk of the same
/// id (a hot-plugged disk included), so every saved disk must be configured again.
fn place_for_restore<'a>(
    drives: &'a [DriveConfig],
    saved: &[SlotState],
) -> Result<Vec<Option<&'a DriveConfig>>, String> {
    let mut placement = vec![None; DISK_SLOTS];
    for d in drives {
        let slot = saved
            .iter()
            .take(DISK_SLOTS)
            .position(|s| s.id.as_deref() == Some(d.id.as_str()))
            .ok_or_else(|| format!("the snapshot has no disk '{}'", d.id))?;
        placement[slot] = Some(d);
    }
    for (index, s) in saved.iter().take(DISK_SLOTS).enumerate() {
        if let (None, DeviceState::Block(b)) = (placement[index], &s.transport.device) {
            if let Some(disk) = &b.disk {
                return Err(format!(
                    "the snapshot's disk '{}' ({}) in slot {index} is not in the configuration: give it again with -drive id={},file=...",
                    s.id.as_deref().unwrap_or(""),
                    disk.path.display(),
                    s.id.as_deref().unwrap_or("")
                ));
            }
        }
    }
    Ok(placement)
}

/// Checks a configured drive against the disk the snapshot recorded in its slot.
fn check_disk(index: usize, drive: Option<&DriveConfig>, saved: &SlotState) -> Result<(), String> {
    if saved.kind != "disk" {
        return Err(format!(
            "slot {index} holds a {} device in the snapshot, a disk in the configuration",
            saved.kind
        ));
    }
    let DeviceState::Block(b) = &saved.transport.device else {
        return Err(format!("slot {index}: the snapshot's device is not a disk"));
    };
    let (Some(d), Some(s)) = (drive, &b.disk) else {
        return Ok(());
    };
    let want = |what: &str, snap: &dyn std::fmt::Display, cfg: &dyn std::fmt::Display| {
        Err(format!(
            "disk '{}': the snapshot has {what} {snap}, the configuration {cfg}",
            d.id
        ))
    };
    let BlockDiskState {
        path,
        read_only,
        direct,
        serial,
        ..
    } = s;
    if !same_path(path, &d.path) {
        return want("image", &path.display(), &d.path.display());
    }
    if *read_only != d.read_only {
        return want("readonly", read_only, &d.read_only);
    }
    if *direct != d.direct {
        return want("direct", direct, &d.direct);
    }
    // A disk given without a serial keeps the one the guest read (a hot-plugged disk's is its
    // node name); one given with a serial must match.
    if let Some(cfg_serial) = d.serial.as_deref().filter(|s| !s.is_empty()) {
        if serial != cfg_serial {
            return want("serial", &format!("'{serial}'"), &format!("'{cfg_serial}'"));
        }
    }
    Ok(())
}

/// Opens the configured disks and creates the six disk slots. At boot the disks fill the slots
/// in order, so the first is `vda`; at a restore (`restore` holds the snapshot's slots) each
/// goes where the snapshot had it. Returns each slot's device id (None for an empty slot).
pub fn attach_disk_slots(
    table: &mut SlotTable,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    drives: &[DriveConfig],
    restore: Option<&[SlotState]>,
) -> Result<Vec<Option<String>>, String> {
    let placement = match restore {
        None => (0..DISK_SLOTS).map(|i| drives.get(i)).collect(),
        Some(saved) => {
            if saved.len() < DISK_SLOTS {
                return Err(format!(
                    "the snapshot has {} virtio slots, a VM has at least {DISK_SLOTS}",
                    saved.len()
                ));
            }
            place_for_restore(drives, saved)?
        }
    };
    let mut ids = Vec::new();
    for (index, drive) in placement.into_iter().enumerate() {
        let saved = restore.map(|s| &s[index]);
        if let Some(s) = saved {
            check_disk(index, drive, s)?;
        }
        let saved_serial = match saved.map(|s| &s.transport.device) {
            Some(DeviceState::Block(b)) => b.disk.as_ref().map(|d| d.serial.as_str()),
            _ => None,
        };
        let disk = match drive {
            Some(d) => Some((
                BlockBackend::open(&d.path, d.read_only, d.direct).map_err(|e| e.to_string())?,
                d.serial
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .or(saved_serial)
                    .unwrap_or(""),
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
        if let Some(DeviceState::Block(b)) = saved.map(|s| &s.transport.device) {
            block.restore_state(b);
        }
        let handle = SlotHandle::Disk(block.handle());
        table.attach(
            vm,
            mem,
            mmio,
            SlotKind::Disk,
            Box::new(block),
            handle,
            saved.map(|s| &s.transport),
        )?;
        ids.push(drive.map(|d| d.id.clone()));
    }
    Ok(ids)
}

/// Creates the console's socket (mode 0600; removed on every exit path from here on) and puts
/// the virtio-console in the next slot; its `console` thread serves the socket from now on, so
/// a client may connect before the guest starts. At a restore (`restore` is the snapshot's
/// slot) the device gets the output it had buffered and the transport its saved state; the
/// socket is the one configured now (a clone has its own). Returns the device id.
pub fn attach_console(
    table: &mut SlotTable,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    console: &ConsoleConfig,
    restore: Option<&SlotState>,
) -> Result<String, String> {
    let index = table.slots().len();
    let saved = match restore.map(|s| (s, &s.transport.device)) {
        None => None,
        Some((s, DeviceState::Console(c))) if s.kind == "fixed" => Some((s, c)),
        Some((s, _)) => {
            return Err(format!(
                "slot {index} holds a {} device of type {} in the snapshot, the console in the configuration",
                s.kind, s.transport.device_type
            ))
        }
    };
    let socket = ConsoleSocket::bind(&console.socket_path).map_err(|e| e.to_string())?;
    let file = socket.file();
    sandbox::last_resort::unlink_on_abort(file.path());
    crate::cleanup::on_exit(move || file.remove());
    let device =
        Console::new(socket).map_err(|e| format!("cannot start the console thread: {e}"))?;
    if let Some((_, state)) = saved {
        device.restore_state(state).map_err(|e| e.to_string())?;
    }
    let slot = table.attach(
        vm,
        mem,
        mmio,
        SlotKind::Fixed,
        Box::new(device),
        SlotHandle::Fixed,
        saved.map(|(s, _)| &s.transport),
    )?;
    log::info!(
        "console {} on socket {} in slot {} (hvc0)",
        console.id,
        console.socket_path.display(),
        slot.index
    );
    Ok(console.id.clone())
}

/// Puts the memory balloon in the next slot (after the disk and NIC slots) and starts its
/// `balloon` thread. A snapshot never holds a balloon (`migrate` refuses a VM with one, and the
/// configuration refuses `-incoming` with one), so a restore gets here only by mistake.
pub fn attach_balloon(
    table: &mut SlotTable,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    balloon: &BalloonConfig,
    restore: Option<&[SlotState]>,
) -> Result<BalloonHandle, String> {
    if restore.is_some() {
        return Err("a VM with a balloon device cannot start from a snapshot".into());
    }
    let device = Balloon::new(mem, balloon.deflate_on_oom, balloon.free_page_reporting)
        .map_err(|e| format!("cannot start the balloon thread: {e}"))?;
    let handle = device.handle();
    let slot = table.attach(
        vm,
        mem,
        mmio,
        SlotKind::Fixed,
        Box::new(device),
        SlotHandle::Fixed,
        None,
    )?;
    log::info!(
        "balloon{} in slot {} (deflate-on-oom {}, free-page-reporting {})",
        balloon
            .id
            .as_deref()
            .map(|id| format!(" {id}"))
            .unwrap_or_default(),
        slot.index,
        if balloon.deflate_on_oom { "on" } else { "off" },
        if balloon.free_page_reporting {
            "on"
        } else {
            "off"
        }
    );
    Ok(handle)
}
