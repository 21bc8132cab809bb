//! The attach steps that build a machine's virtio devices into its slot table, one per kind of
//! device; booting runs them in the slot order [`crate::slots`] describes.

use crate::hotplug::{BootDevice, SlotHandle};
use crate::slots::{SlotKind, SlotTable, DISK_SLOTS, NIC_SLOTS};
use config::{DriveConfig, NetConfig};
use devices::virtio::block::{Block, BlockBackend};
use devices::virtio::net::{
    format_mac, random_mac, Net, NicBackend, TapSource, VhostSource, VHOST_REQUIRED,
};
use devices::Bus;
use kvm_ioctls::VmFd;
use std::os::fd::{FromRawFd, OwnedFd};
use vm_memory::GuestMemoryMmap;

/// What the host gives the VM before it is built, opened early so that a bad one is refused
/// before anything is created: the NICs' TAPs (and vhost devices), in configuration order.
#[derive(Default)]
pub struct HostResources {
    pub nics: Vec<NicBackend>,
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

/// Creates the two NIC slots; boot NICs fill them in order, so the first is `eth0`. Returns
/// each slot's boot device (None for an empty slot).
pub fn attach_nic_slots(
    table: &mut SlotTable,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    nets: &[NetConfig],
    backends: Vec<NicBackend>,
) -> Result<Vec<Option<BootDevice>>, String> {
    let mut backends = backends.into_iter();
    let mut ids = Vec::new();
    for index in 0..NIC_SLOTS {
        let nic = nets.get(index);
        let backend = nic.and_then(|_| backends.next());
        let mac = nic.and_then(|n| n.mac).unwrap_or_else(random_mac);
        match (nic, &backend) {
            (Some(n), Some(b)) => log::info!(
                "NIC {} (TAP {}{}) in slot {index} (eth{index}), MAC {}{}",
                n.device_id(),
                b.tap.name(),
                if b.vhost.is_some() { ", vhost-net" } else { "" },
                format_mac(&mac),
                if n.mac.is_none() { " (generated)" } else { "" }
            ),
            _ => log::info!(
                "NIC slot {index} (eth{index}) empty, MAC {} (generated)",
                format_mac(&mac)
            ),
        }
        let net = Net::new(index, mac, backend);
        let handle = SlotHandle::Nic(net.handle());
        table.attach(vm, mem, mmio, SlotKind::Nic, Box::new(net), handle)?;
        ids.push(nic.map(|n| BootDevice {
            device: n.device_id().to_string(),
            backend: n.id.clone(),
        }));
    }
    Ok(ids)
}

/// Opens the boot disks and creates the six disk slots; boot disks fill slots in order, so the
/// first is `vda`. Returns each slot's boot device (None for an empty slot).
pub fn attach_disk_slots(
    table: &mut SlotTable,
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio: &mut Bus,
    drives: &[DriveConfig],
) -> Result<Vec<Option<BootDevice>>, String> {
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
        ids.push(drive.map(|d| BootDevice::same(&d.id)));
    }
    Ok(ids)
}
