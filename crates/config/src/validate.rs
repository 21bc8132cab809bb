//! Every rule on a [`VmConfig`], checked once, here. Errors name the option
//! or JSON key the offending value came from (see [`Origins`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{quote, ConfigError};
use crate::limits::*;
use crate::model::*;
use crate::origin::Origin;

/// Where each validated value came from. The default names the
/// command-line options.
#[derive(Debug, Clone)]
pub(crate) struct Origins {
    pub name: Origin,
    pub vcpus: Origin,
    pub mem: Origin,
    pub kernel: Origin,
    pub initrd: Origin,
    pub serial: Origin,
    pub console: Origin,
    pub vsock: Origin,
    pub balloon: Origin,
    pub qmp: Origin,
    pub log_file: Origin,
    pub pidfile: Origin,
    pub daemonize: Origin,
    pub incoming: Origin,
    /// One per drive, in order; missing entries mean `-drive`.
    pub drives: Vec<Origin>,
    /// One per NIC, in order; missing entries mean `-netdev`.
    pub nets: Vec<Origin>,
}

impl Default for Origins {
    fn default() -> Self {
        Origins {
            name: Origin::opt("-name"),
            vcpus: Origin::opt("-smp"),
            mem: Origin::opt("-m"),
            kernel: Origin::opt("-kernel"),
            initrd: Origin::opt("-initrd"),
            serial: Origin::opt("-serial"),
            console: Origin::opt("-chardev"),
            vsock: Origin::opt("-device"),
            balloon: Origin::opt("-device"),
            qmp: Origin::opt("-qmp"),
            log_file: Origin::opt("-D"),
            pidfile: Origin::opt("-pidfile"),
            daemonize: Origin::opt("-daemonize"),
            incoming: Origin::opt("-incoming"),
            drives: Vec::new(),
            nets: Vec::new(),
        }
    }
}

impl Origins {
    fn drive(&self, i: usize) -> Origin {
        self.drives
            .get(i)
            .cloned()
            .unwrap_or_else(|| Origin::opt("-drive"))
    }

    fn net(&self, i: usize) -> Origin {
        self.nets
            .get(i)
            .cloned()
            .unwrap_or_else(|| Origin::opt("-netdev"))
    }
}

pub(crate) use crate::occupant::{probe_path, Occupant, Probe, Want};

/// The error for an existing `path` that should become a `what` ("socket path", "pidfile"):
/// who holds it, and the advice to remove it only when that is safe.
fn occupied(key: String, what: &str, path: &Path, occupant: Occupant) -> Result<(), ConfigError> {
    let p = quote(&path.to_string_lossy());
    let why = match occupant {
        Occupant::Nothing => return Ok(()),
        Occupant::InUse(Some(pid)) => format!("{what} {p} is in use by running process {pid}"),
        Occupant::InUse(None) => format!("{what} {p} is in use by a running process"),
        Occupant::Stale(reason) => format!(
            "{what} {p} already exists, left over from a process that is gone ({reason}): remove it first"
        ),
        Occupant::Other(reason) => {
            format!("{what} {p} already exists and {reason} (choose another path)")
        }
        Occupant::NoDirectory(reason) => format!("{what} {p} cannot be created: {reason}"),
    };
    Err(ConfigError::invalid(key, why))
}

/// `100 MiB`, `2 GiB` or `134213632 bytes`: the largest exact unit.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB")];
    if bytes != 0 {
        for (unit, name) in UNITS {
            if bytes.is_multiple_of(unit) {
                return format!("{} {name}", bytes / unit);
            }
        }
    }
    format!("{bytes} bytes")
}

/// The vCPU count rule; also narrows the count to the model's `u8`.
pub(crate) fn check_vcpus(n: u64, origin: &Origin) -> Result<u8, ConfigError> {
    if !(MIN_VCPUS..=MAX_VCPUS).contains(&n) {
        return Err(ConfigError::invalid(
            origin.field("vcpu_count"),
            format!("vCPU count {n} is out of range {MIN_VCPUS}..={MAX_VCPUS}"),
        ));
    }
    u8::try_from(n).map_err(|_| {
        ConfigError::invalid(
            origin.field("vcpu_count"),
            format!("vCPU count {n} is too large"),
        )
    })
}

/// The topology rules: its levels multiply to the vCPU count, and its APIC ids fit the xAPIC
/// id space beside the IOAPIC.
fn check_topology(m: &MachineConfig, origin: &Origin) -> Result<(), ConfigError> {
    let Some(t) = m.topology else {
        return Ok(());
    };
    let key = origin.field("vcpu_count");
    if t.vcpus() != u64::from(m.vcpus) {
        return Err(ConfigError::invalid(
            key,
            format!(
                "sockets*cores*threads is {}, it must equal the vCPU count {}",
                t.vcpus(),
                m.vcpus
            ),
        ));
    }
    let max = t.max_apic_id();
    if max > MAX_APIC_ID {
        return Err(ConfigError::invalid(
            key,
            format!(
                "sockets={},cores={},threads={} needs APIC ids up to {max}, the most is {MAX_APIC_ID} (use power-of-two cores and threads, or fewer vCPUs)",
                t.sockets, t.cores, t.threads
            ),
        ));
    }
    Ok(())
}

/// The memory size rule.
pub(crate) fn check_mem(bytes: u64, origin: &Origin) -> Result<(), ConfigError> {
    let key = origin.field("mem_size");
    if !(MIN_MEM_SIZE..=MAX_MEM_SIZE).contains(&bytes) {
        return Err(ConfigError::invalid(
            key,
            format!(
                "memory size {} is out of range {}..={}",
                human_size(bytes),
                human_size(MIN_MEM_SIZE),
                human_size(MAX_MEM_SIZE)
            ),
        ));
    }
    if !bytes.is_multiple_of(MEM_ALIGN) {
        return Err(ConfigError::invalid(
            key,
            format!("memory size {bytes} bytes is not a multiple of 4 KiB"),
        ));
    }
    Ok(())
}

fn check_name(name: &str, origin: &Origin) -> Result<(), ConfigError> {
    let len = name.chars().count();
    if !(1..=MAX_NAME_LEN).contains(&len) {
        return Err(ConfigError::invalid(
            origin.field("name"),
            format!("VM name must be 1..={MAX_NAME_LEN} characters long, got {len}"),
        ));
    }
    Ok(())
}

fn non_empty(value: &str, key: String, what: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::invalid(key, format!("{what} is empty")));
    }
    Ok(())
}

fn non_empty_path(path: &Path, key: String, what: &str) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(ConfigError::invalid(key, format!("{what} is empty")));
    }
    Ok(())
}

/// A unix socket this VMM will create: not empty, short enough, not there yet.
fn check_new_socket(path: &Path, key: String, probe: Probe) -> Result<(), ConfigError> {
    non_empty_path(path, key.clone(), "socket path")?;
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH_LEN {
        return Err(ConfigError::invalid(
            key,
            format!("socket path is {len} bytes long, the limit is {MAX_SOCKET_PATH_LEN}"),
        ));
    }
    occupied(key, "socket path", path, probe(path, Want::Socket))
}

fn check_boot(boot: &BootSource, o: &Origins) -> Result<(), ConfigError> {
    if boot.kernel.as_os_str().is_empty() {
        return Err(ConfigError::invalid(
            o.kernel.field("kernel_image_path"),
            "a kernel image is required (-kernel or boot-source.kernel_image_path)",
        ));
    }
    if let Some(initrd) = &boot.initrd {
        non_empty_path(initrd, o.initrd.field("initrd_fs_path"), "initrd path")?;
    }
    Ok(())
}

fn check_drives(drives: &[DriveConfig], o: &Origins) -> Result<(), ConfigError> {
    if drives.len() > MAX_DRIVES {
        return Err(ConfigError::invalid(
            o.drive(MAX_DRIVES).name(),
            format!(
                "at most {MAX_DRIVES} disks are supported, got {}",
                drives.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    // One image, one drive: the same file twice (by any name) would have two writers.
    let mut images: Vec<(PathBuf, &str)> = Vec::new();
    for (i, d) in drives.iter().enumerate() {
        let origin = o.drive(i);
        non_empty(&d.id, origin.field("drive_id"), "drive id")?;
        non_empty_path(&d.path, origin.field("path_on_host"), "drive file path")?;
        if let Some(serial) = &d.serial {
            if serial.len() > MAX_DRIVE_SERIAL_LEN {
                return Err(ConfigError::invalid(
                    origin.field("serial_num"),
                    format!(
                        "serial number {} is longer than {MAX_DRIVE_SERIAL_LEN} bytes",
                        quote(serial)
                    ),
                ));
            }
        }
        if !seen.insert(d.id.as_str()) {
            return Err(ConfigError::invalid(
                origin.field("drive_id"),
                format!("duplicate drive id {}", quote(&d.id)),
            ));
        }
        let key = std::fs::canonicalize(&d.path).unwrap_or_else(|_| d.path.clone());
        if let Some((_, first)) = images.iter().find(|(k, _)| *k == key) {
            return Err(ConfigError::invalid(
                origin.field("path_on_host"),
                format!(
                    "image {} is already used by drive {} (a disk image can back one drive only)",
                    quote(&d.path.to_string_lossy()),
                    quote(first)
                ),
            ));
        }
        images.push((key, d.id.as_str()));
    }
    Ok(())
}

fn check_nets(nets: &[NetConfig], drives: &[DriveConfig], o: &Origins) -> Result<(), ConfigError> {
    if nets.len() > MAX_NETS {
        return Err(ConfigError::invalid(
            o.net(MAX_NETS).name(),
            format!("at most {MAX_NETS} NICs are supported, got {}", nets.len()),
        ));
    }
    let mut seen = HashSet::new();
    let mut devices = HashSet::new();
    let mut taps: Vec<(&str, &str)> = Vec::new();
    let mut fds: Vec<(i32, &str)> = Vec::new();
    for (i, n) in nets.iter().enumerate() {
        let origin = o.net(i);
        non_empty(&n.id, origin.field("iface_id"), "NIC id")?;
        let key = origin.field("host_dev_name");
        match n.fd {
            None => non_empty(&n.host_dev_name, key.clone(), "tap device name")?,
            Some(fd) => {
                // 0, 1 and 2 are the VMM's own standard streams.
                if fd < 3 {
                    return Err(ConfigError::invalid(
                        key,
                        format!("fd={fd} is a standard stream, not a TAP descriptor"),
                    ));
                }
                if let Some((_, first)) = fds.iter().find(|(f, _)| *f == fd) {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "fd={fd} is already the TAP of NIC {} (a TAP serves one NIC)",
                            quote(first)
                        ),
                    ));
                }
                fds.push((fd, n.id.as_str()));
            }
        }
        if n.host_dev_name.len() > MAX_IFNAME_LEN {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "tap device name {} is longer than {MAX_IFNAME_LEN} bytes",
                    quote(&n.host_dev_name)
                ),
            ));
        }
        if !n.host_dev_name.is_empty() {
            if n.host_dev_name
                .bytes()
                .any(|b| b == b'/' || b.is_ascii_whitespace())
                || n.host_dev_name == "."
                || n.host_dev_name == ".."
            {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "tap device name {} is not an interface name",
                        quote(&n.host_dev_name)
                    ),
                ));
            }
            if let Some((_, first)) = taps.iter().find(|(t, _)| *t == n.host_dev_name) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "tap device {} is already the TAP of NIC {} (a TAP serves one NIC)",
                        quote(&n.host_dev_name),
                        quote(first)
                    ),
                ));
            }
            taps.push((n.host_dev_name.as_str(), n.id.as_str()));
        }
        if let Some(mac) = n.mac {
            let bad = if mac[0] & 1 != 0 {
                Some("is multicast")
            } else if mac == [0; 6] {
                Some("is all zeros")
            } else {
                None
            };
            if let Some(why) = bad {
                return Err(ConfigError::invalid(
                    origin.field("mac"),
                    format!("MAC address {} {why}", crate::mac::format_mac(&mac)),
                ));
            }
        }
        if let Some(fd) = n.vhost_fd {
            if !n.vhost {
                return Err(ConfigError::invalid(
                    origin.name(),
                    "vhostfd= needs vhost=on",
                ));
            }
            if fd < 3 || fds.iter().any(|(f, _)| *f == fd) {
                return Err(ConfigError::invalid(
                    origin.name(),
                    format!("vhostfd={fd} is not a descriptor of its own"),
                ));
            }
        }
        if !seen.insert(n.id.as_str()) {
            return Err(ConfigError::invalid(
                origin.field("iface_id"),
                format!("duplicate NIC id {}", quote(&n.id)),
            ));
        }
        let dev = n.device_id();
        if !devices.insert(dev) || drives.iter().any(|d| d.id == dev) {
            return Err(ConfigError::invalid(
                origin.name(),
                format!(
                    "device id {} is already used by another device (ids are unique in a VM)",
                    quote(dev)
                ),
            ));
        }
    }
    Ok(())
}

fn check_other_devices(cfg: &VmConfig, o: &Origins, probe: Probe) -> Result<(), ConfigError> {
    if let Some(c) = &cfg.console {
        non_empty(&c.id, o.console.field("console_id"), "console id")?;
        check_new_socket(&c.socket_path, o.console.field("socket_path"), probe)?;
    }
    if let Some(v) = &cfg.vsock {
        non_empty(&v.id, o.vsock.field("vsock_id"), "vsock id")?;
        if !(MIN_GUEST_CID..=MAX_GUEST_CID).contains(&v.guest_cid) {
            return Err(ConfigError::invalid(
                o.vsock.field("guest_cid"),
                format!(
                    "guest-cid {} is out of range {MIN_GUEST_CID}..={MAX_GUEST_CID}",
                    v.guest_cid
                ),
            ));
        }
        if let Some(path) = &v.uds_path {
            let key = o.vsock.field("uds_path");
            if v.vhost_fd.is_some() {
                return Err(ConfigError::invalid(
                    o.vsock.name(),
                    "vhostfd= is for vhost-vsock; uds-path= selects the userspace backend: give one",
                ));
            }
            let len = path.as_os_str().len();
            if len > MAX_VSOCK_PATH_LEN {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "vsock socket path is {len} bytes long, the limit is {MAX_VSOCK_PATH_LEN} (guest connections to port P go to <path>_P)"
                    ),
                ));
            }
            check_new_socket(path, key.clone(), probe)?;
            if cfg.console.as_ref().is_some_and(|c| &c.socket_path == path) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "socket path {} is also the console socket",
                        quote(&path.to_string_lossy())
                    ),
                ));
            }
        }
        if let Some(fd) = v.vhost_fd {
            let taken = cfg
                .nets
                .iter()
                .any(|n| n.fd == Some(fd) || n.vhost_fd == Some(fd));
            if fd < 3 || taken {
                return Err(ConfigError::invalid(
                    o.vsock.name(),
                    format!("vhostfd={fd} is not a descriptor of its own"),
                ));
            }
        }
    }
    if let Some(id) = cfg.balloon.as_ref().and_then(|b| b.id.as_deref()) {
        non_empty(id, o.balloon.name().to_string(), "balloon id")?;
        if cfg.drives.iter().any(|d| d.id == id) {
            return Err(ConfigError::invalid(
                o.balloon.name(),
                format!("id {} is also a drive's id", quote(id)),
            ));
        }
    }
    let others = usize::from(cfg.console.is_some())
        + usize::from(cfg.vsock.is_some())
        + usize::from(cfg.balloon.is_some());
    if others > MAX_OTHER_DEVICES {
        // Named after the last of them: console, vsock, balloon.
        let origin = if cfg.balloon.is_some() {
            &o.balloon
        } else {
            &o.vsock
        };
        return Err(ConfigError::invalid(
            origin.name(),
            format!(
                "at most {MAX_OTHER_DEVICES} devices besides disks and NICs are supported, got {others} (console, vsock and balloon count)"
            ),
        ));
    }
    Ok(())
}

fn check_qmp(cfg: &VmConfig, o: &Origins, probe: Probe) -> Result<(), ConfigError> {
    let Some(qmp) = &cfg.qmp else {
        return Ok(());
    };
    let key = o.qmp.name().to_string();
    check_new_socket(&qmp.path, key.clone(), probe)?;
    if let Some(v) = cfg.vsock.as_ref().and_then(|v| v.uds_path.as_ref()) {
        if *v == qmp.path {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "socket path {} is also the vsock socket",
                    quote(&qmp.path.to_string_lossy())
                ),
            ));
        }
    }
    if let Some(c) = &cfg.console {
        if c.socket_path == qmp.path {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "socket path {} is also the console socket",
                    quote(&qmp.path.to_string_lossy())
                ),
            ));
        }
    }
    Ok(())
}

fn check_process(cfg: &VmConfig, o: &Origins, probe: Probe) -> Result<(), ConfigError> {
    let p = &cfg.process;
    if let Some(Some(log)) = &p.log_file {
        non_empty_path(log, o.log_file.name().to_string(), "log file path")?;
    }
    if let Some(pidfile) = &p.pidfile {
        let key = o.pidfile.name().to_string();
        non_empty_path(pidfile, key.clone(), "pidfile path")?;
        occupied(
            key.clone(),
            "pidfile",
            pidfile,
            probe(pidfile, Want::Pidfile),
        )?;
        if !p.daemonize {
            return Err(ConfigError::invalid(
                key,
                "must be used together with -daemonize",
            ));
        }
    }
    if p.daemonize {
        let key = o.daemonize.name().to_string();
        if p.pidfile.is_none() {
            return Err(ConfigError::invalid(key, "needs -pidfile"));
        }
        if cfg.serial.as_ref().is_some_and(|s| s.stdio) {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "cannot be used with {} (a daemon has no terminal)",
                    match &o.serial {
                        Origin::Opt(s) => format!("{s} stdio"),
                        Origin::Json(_) => o.serial.field("stdio"),
                    }
                ),
            ));
        }
    }
    Ok(())
}

fn check_incoming(cfg: &VmConfig, o: &Origins) -> Result<(), ConfigError> {
    if let Some(dir) = &cfg.incoming {
        if cfg.balloon.is_some() {
            // A snapshot never holds one: `migrate` refuses a VM with a balloon.
            return Err(ConfigError::invalid(
                o.incoming.name(),
                "a VM with a balloon device cannot start from a snapshot (snapshots exclude the balloon)",
            ));
        }
        if !dir.is_absolute() {
            return Err(ConfigError::invalid(
                o.incoming.name(),
                format!(
                    "snapshot path {} must be absolute (file:/abs/dir)",
                    quote(&dir.to_string_lossy())
                ),
            ));
        }
    }
    Ok(())
}

impl VmConfig {
    /// Check every documented limit and cross-option rule. Errors name the
    /// command-line options; configurations parsed by this crate are already
    /// validated, with errors naming the option or JSON key actually used.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with(&Origins::default(), probe_path)
    }

    pub(crate) fn validate_with(&self, o: &Origins, probe: Probe) -> Result<(), ConfigError> {
        check_name(&self.name, &o.name)?;
        check_vcpus(self.machine.vcpus.into(), &o.vcpus)?;
        check_topology(&self.machine, &o.vcpus)?;
        check_mem(self.machine.mem_size, &o.mem)?;
        check_boot(&self.boot, o)?;
        check_drives(&self.drives, o)?;
        check_nets(&self.nets, &self.drives, o)?;
        check_other_devices(self, o, probe)?;
        check_qmp(self, o, probe)?;
        check_process(self, o, probe)?;
        check_incoming(self, o)
    }
}

#[cfg(test)]
mod tests;
