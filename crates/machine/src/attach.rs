//! The attach steps that build a machine's virtio devices into its slot table, one per kind of
//! device; booting and restoring ([`crate::builder`]) run them in the slot order
//! [`crate::slots`] describes. At a restore each step rebuilds its devices from the
//! configuration, checks them against what the snapshot recorded and hands the transport its
//! saved state.

use crate::hotplug::{BootDevice, SlotHandle};
use crate::slots::{SlotKind, SlotTable, DISK_SLOTS, NIC_SLOTS};
use crate::snapshot::SlotState;
use config::{BalloonConfig, ConsoleConfig, DriveConfig, NetConfig, VsockConfig};
use devices::virtio::balloon::{Balloon, BalloonHandle};
use devices::virtio::block::{Block, BlockBackend, BlockDiskState};
use devices::virtio::console::{Console, ConsoleSocket};
use devices::virtio::net::{
    format_mac, random_mac, Net, NetState, NicBackend, TapSource, VhostSource, VHOST_REQUIRED,
};
use devices::virtio::vsock::{Backend, VhostVsock, VhostVsockSource, Vsock, VsockSocket};
use devices::virtio::DeviceState;
use devices::{Bus, Persist};
use kvm_ioctls::VmFd;
use std::os::fd::{FromRawFd, OwnedFd};
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
/// goes where the snapshot had it. Returns each slot's device (None for an empty slot).
pub fn attach_disk_slots(
    table: &mut SlotTable,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    drives: &[DriveConfig],
    restore: Option<&[SlotState]>,
) -> Result<Vec<Option<BootDevice>>, String> {
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
        ids.push(drive.map(|d| BootDevice::same(&d.id)));
    }
    Ok(ids)
}

/// What the host gives the VM before it is built, opened early so that a bad one is refused
/// before anything is created: the NICs' TAPs (and vhost devices), in configuration order.
#[derive(Default)]
pub struct HostResources {
    pub nics: Vec<NicBackend>,
    /// The vhost-vsock device, with the guest's CID claimed (None for the userspace backend).
    pub vhost_vsock: Option<VhostVsock>,
}

/// Opens `/dev/vhost-vsock` (or the inherited `vhostfd=`) for a vsock without `uds-path=` and
/// claims its CID, so that a host without the module, or a CID another VM holds, is refused
/// before anything is created.
pub fn open_vhost_vsock(vsock: Option<&VsockConfig>) -> Result<Option<VhostVsock>, String> {
    let Some(v) = vsock.filter(|v| v.uds_path.is_none()) else {
        return Ok(None);
    };
    let src = match v.vhost_fd {
        None => VhostVsockSource::Open,
        Some(fd) => {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                return Err(format!("vsock {}: vhostfd={fd} is not open", v.id));
            }
            // SAFETY: the descriptor is open and was handed to this process for this device
            // (validation keeps it apart from the NICs' and the standard streams).
            VhostVsockSource::Fd(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    };
    VhostVsock::open(src, v.guest_cid)
        .map(Some)
        .map_err(|e| format!("vsock {}: {e}", v.id))
}

/// Opens every configured NIC's TAP (by name or the inherited descriptor) and, for
/// `vhost=on`, `/dev/vhost-net` (or the inherited `vhostfd=`). Errors name the NIC.
pub fn open_nic_backends(nets: &[NetConfig]) -> Result<Vec<NicBackend>, String> {
    nets.iter()
        .map(|n| {
            let err = |e: &dyn std::fmt::Display| format!("NIC {}: {e}", n.id);
            let tap = match n.fd {
                Some(fd) => TapSource::Fd(fd),
                None => TapSource::Name(n.host_dev_name.clone()),
            };
            let vhost = match (n.vhost, n.vhost_fd) {
                (false, _) => None,
                (true, None) => Some(VhostSource::Open),
                (true, Some(fd)) => {
                    // SAFETY: F_GETFD only reads the descriptor's flags.
                    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                        return Err(err(&format!("vhostfd={fd} is not open")));
                    }
                    // SAFETY: the descriptor is open and was handed to this process for this
                    // NIC (validation keeps it apart from the TAP's and the standard streams).
                    Some(VhostSource::Fd(unsafe { OwnedFd::from_raw_fd(fd) }))
                }
            };
            NicBackend::open(&tap, vhost, VHOST_REQUIRED).map_err(|e| err(&e))
        })
        .collect()
}

/// The NIC state a snapshot recorded in NIC slot `index` (`saved` holds the NIC slots).
fn saved_nic(index: usize, saved: &SlotState) -> Result<&NetState, String> {
    match (&saved.transport.device, saved.kind.as_str()) {
        (DeviceState::Net(n), "nic") => Ok(n),
        _ => Err(format!(
            "slot {} holds a {} device in the snapshot, a NIC in the configuration",
            DISK_SLOTS + index,
            saved.kind
        )),
    }
}

/// Which configured NIC goes in which NIC slot at a restore: where the snapshot had a NIC of
/// the same device id (a hot-plugged one included), so every saved NIC with a TAP must be
/// configured again; a configured MAC must be the one the guest has.
fn place_nics_for_restore(
    nets: &[NetConfig],
    saved: &[SlotState],
) -> Result<Vec<Option<usize>>, String> {
    let mut placement = vec![None; NIC_SLOTS];
    for (i, n) in nets.iter().enumerate() {
        let slot = saved
            .iter()
            .position(|s| s.id.as_deref() == Some(n.device_id()))
            .ok_or_else(|| format!("the snapshot has no NIC '{}'", n.device_id()))?;
        let state = saved_nic(slot, &saved[slot])?;
        if let Some(mac) = n.mac.filter(|m| *m != state.mac) {
            return Err(format!(
                "NIC '{}': the snapshot has MAC {}, the configuration {}",
                n.device_id(),
                format_mac(&state.mac),
                format_mac(&mac)
            ));
        }
        placement[slot] = Some(i);
    }
    for (index, s) in saved.iter().enumerate() {
        let state = saved_nic(index, s)?;
        if let (None, Some(tap)) = (placement[index], &state.tap) {
            let id = s.id.as_deref().unwrap_or("");
            return Err(format!(
                "the snapshot's NIC '{id}' (TAP {tap}) in eth{index} is not in the configuration: give it again with -netdev tap,id=...,ifname={tap} -device virtio-net-device,netdev=...,id={id}"
            ));
        }
    }
    Ok(placement)
}

/// Creates the two NIC slots after the disks. At boot the configured NICs fill them in order,
/// so the first is `eth0`; at a restore (`restore` holds the snapshot's slots) each goes where
/// the snapshot had it, with the MAC the guest read. `backends` are the NICs' opened TAPs, in
/// configuration order. Returns each slot's device (None for an empty slot).
#[allow(clippy::too_many_arguments)]
pub fn attach_nic_slots(
    table: &mut SlotTable,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    nets: &[NetConfig],
    backends: Vec<NicBackend>,
    restore: Option<&[SlotState]>,
) -> Result<Vec<Option<BootDevice>>, String> {
    let saved = match restore {
        None => None,
        Some(s) => Some(s.get(DISK_SLOTS..DISK_SLOTS + NIC_SLOTS).ok_or_else(|| {
            format!(
                "the snapshot has {} virtio slots, a VM has at least {}",
                s.len(),
                DISK_SLOTS + NIC_SLOTS
            )
        })?),
    };
    let placement = match saved {
        None => (0..NIC_SLOTS)
            .map(|i| (i < nets.len()).then_some(i))
            .collect(),
        Some(saved) => place_nics_for_restore(nets, saved)?,
    };
    let mut backends: Vec<Option<NicBackend>> = backends.into_iter().map(Some).collect();
    let mut ids = Vec::new();
    for (index, configured) in placement.into_iter().enumerate() {
        let nic = configured.map(|i| &nets[i]);
        let backend = configured.and_then(|i| backends.get_mut(i).and_then(Option::take));
        let saved = saved.map(|s| &s[index]);
        let (net, generated) = match saved {
            None => {
                let mac = nic.and_then(|n| n.mac);
                (
                    Net::new(index, mac.unwrap_or_else(random_mac), backend),
                    mac.is_none(),
                )
            }
            Some(s) => (
                Net::restore((index, backend), saved_nic(index, s)?).map_err(|e| e.to_string())?,
                false,
            ),
        };
        let h = net.handle();
        let mac = format_mac(&h.mac());
        let mac_note = if generated { " (generated)" } else { "" };
        match (nic, h.tap_name()) {
            (Some(n), Some(tap)) => log::info!(
                "NIC {} (TAP {tap}{}) in slot {index} (eth{index}), MAC {mac}{mac_note}",
                n.device_id(),
                if h.state().vhost { ", vhost-net" } else { "" },
            ),
            _ => log::info!("NIC slot {index} (eth{index}) empty, MAC {mac}{mac_note}"),
        }
        table.attach(
            vm,
            mem,
            mmio,
            SlotKind::Nic,
            Box::new(net),
            SlotHandle::Nic(h),
            saved.map(|s| &s.transport),
        )?;
        ids.push(nic.map(|n| BootDevice {
            device: n.device_id().to_string(),
            backend: n.id.clone(),
        }));
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
    remove_on_every_exit(socket.file());
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

/// Puts the virtio-vsock in the next slot: on vhost-vsock (`vhost`, opened before anything was
/// created) or, with `uds-path=`, on a new Unix socket (mode 0600; removed on every exit path
/// from here on) that its `vsock` thread serves from now on, so host programs may connect
/// before the guest starts. At a restore (`restore` is the snapshot's slot) the transport gets
/// its saved state and the guest a transport reset: the connections of the saved VM are gone.
/// Returns the device id.
#[allow(clippy::too_many_arguments)]
pub fn attach_vsock(
    table: &mut SlotTable,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    vsock: &VsockConfig,
    vhost: Option<VhostVsock>,
    restore: Option<&SlotState>,
) -> Result<String, String> {
    let index = table.slots().len();
    let saved = match restore.map(|s| (s, &s.transport.device)) {
        None => None,
        Some((s, DeviceState::Vsock(v))) if s.kind == "fixed" => Some((s, v)),
        Some((s, _)) => {
            return Err(format!(
                "slot {index} holds a {} device of type {} in the snapshot, the vsock in the configuration",
                s.kind, s.transport.device_type
            ))
        }
    };
    let (backend, what) = match (&vsock.uds_path, vhost) {
        (Some(path), _) => {
            let socket = VsockSocket::bind(path).map_err(|e| e.to_string())?;
            remove_on_every_exit(socket.file());
            (Backend::Unix(socket), format!("socket {}", path.display()))
        }
        (None, Some(dev)) => (Backend::Vhost(dev), "vhost-vsock".to_string()),
        (None, None) => return Err(format!("vsock {}: vhost-vsock was not opened", vsock.id)),
    };
    let device = match saved {
        None => Vsock::new(vsock.guest_cid, backend)
            .map_err(|e| format!("cannot start the vsock thread: {e}"))?,
        Some((_, state)) => {
            Vsock::restore((vsock.guest_cid, backend), state).map_err(|e| e.to_string())?
        }
    };
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
        "vsock {} (guest CID {}) on {what} in slot {}",
        vsock.id,
        vsock.guest_cid,
        slot.index
    );
    Ok(vsock.id.clone())
}

/// A device's socket file goes on every exit path: the orderly one (the clean-ups) and a
/// fatal signal's (the last-resort handler).
fn remove_on_every_exit(file: sandbox::private::SocketFile) {
    sandbox::last_resort::unlink_on_abort(file.path());
    crate::cleanup::on_exit(move || file.remove());
}
