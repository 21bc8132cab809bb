//! Collects values from the `-config` file and then the command line (which
//! wins), remembering where each came from, and turns them into one
//! validated [`VmConfig`].

use std::path::PathBuf;

use crate::error::ConfigError;
use crate::model::*;
use crate::origin::Origin;
use crate::validate::{check_vcpus, Origins, Probe};

/// A value and where it came from.
pub(crate) type Setting<T> = Option<(T, Origin)>;

#[derive(Debug, Default)]
pub(crate) struct Builder {
    pub name: Setting<String>,
    pub kernel: Setting<PathBuf>,
    pub append: Setting<String>,
    pub initrd: Setting<PathBuf>,
    pub vcpus: Setting<u64>,
    /// From `-smp ...,sockets=,cores=,threads=`; the default is one vCPU per socket.
    pub topology: Setting<crate::topology::CpuTopology>,
    pub mem: Setting<u64>,
    pub omit_vm_memory: Setting<bool>,
    pub drives: Vec<(DriveConfig, Origin)>,
    pub nets: Vec<(NetConfig, Origin)>,
    pub console: Setting<ConsoleConfig>,
    pub vsock: Setting<VsockConfig>,
    pub balloon: Setting<BalloonConfig>,
    pub serial: Setting<bool>,
    pub qmp: Setting<PathBuf>,
    pub log_file: Setting<Option<PathBuf>>,
    pub pidfile: Setting<PathBuf>,
    pub daemonize: Option<Origin>,
    pub disable_seccomp: bool,
    pub incoming: Setting<PathBuf>,
}

/// Put `item` in `list`: in place of an entry from the JSON file with the same
/// id, else at the end (duplicates among command-line entries are left for
/// validation to report).
fn merge<T>(list: &mut Vec<(T, Origin)>, item: T, origin: Origin, id: impl Fn(&T) -> &str) {
    let slot = list
        .iter_mut()
        .find(|(old, o)| matches!(o, Origin::Json(_)) && id(old) == id(&item));
    match slot {
        Some(slot) => *slot = (item, origin),
        None => list.push((item, origin)),
    }
}

fn origin_or<T>(s: &Setting<T>, default: Origin) -> Origin {
    s.as_ref().map(|(_, o)| o.clone()).unwrap_or(default)
}

impl Builder {
    pub fn merge_drive(&mut self, drive: DriveConfig, origin: Origin) {
        merge(&mut self.drives, drive, origin, |d| &d.id);
    }

    pub fn merge_net(&mut self, net: NetConfig, origin: Origin) {
        merge(&mut self.nets, net, origin, |n| &n.id);
    }

    /// Assemble the model and validate it.
    pub fn build(self, probe: Probe) -> Result<VmConfig, ConfigError> {
        let d = Origins::default();
        let origins = Origins {
            name: origin_or(&self.name, d.name),
            vcpus: origin_or(&self.vcpus, d.vcpus),
            mem: origin_or(&self.mem, d.mem),
            kernel: origin_or(&self.kernel, d.kernel),
            initrd: origin_or(&self.initrd, d.initrd),
            serial: origin_or(&self.serial, d.serial),
            console: origin_or(&self.console, d.console),
            vsock: origin_or(&self.vsock, d.vsock),
            balloon: origin_or(&self.balloon, d.balloon),
            qmp: origin_or(&self.qmp, d.qmp),
            log_file: origin_or(&self.log_file, d.log_file),
            pidfile: origin_or(&self.pidfile, d.pidfile),
            daemonize: self.daemonize.clone().unwrap_or(d.daemonize),
            incoming: origin_or(&self.incoming, d.incoming),
            drives: self.drives.iter().map(|(_, o)| o.clone()).collect(),
            nets: self.nets.iter().map(|(_, o)| o.clone()).collect(),
        };
        let vcpus = match self.vcpus {
            Some((n, _)) => check_vcpus(n, &origins.vcpus)?,
            None => DEFAULT_VCPUS,
        };
        let cfg = VmConfig {
            name: self
                .name
                .map_or_else(|| DEFAULT_VM_NAME.to_string(), |(n, _)| n),
            machine: MachineConfig {
                kind: MachineType::Microvm,
                vcpus,
                topology: self.topology.map(|(t, _)| t),
                mem_size: self.mem.map_or(DEFAULT_MEM_SIZE, |(m, _)| m),
                omit_vm_memory: self.omit_vm_memory.is_some_and(|(b, _)| b),
            },
            boot: BootSource {
                kernel: self.kernel.map(|(k, _)| k).unwrap_or_default(),
                cmdline: self.append.map(|(a, _)| a).unwrap_or_default(),
                initrd: self.initrd.map(|(i, _)| i),
            },
            drives: self.drives.into_iter().map(|(d, _)| d).collect(),
            nets: self.nets.into_iter().map(|(n, _)| n).collect(),
            console: self.console.map(|(c, _)| c),
            vsock: self.vsock.map(|(v, _)| v),
            balloon: self.balloon.map(|(b, _)| b),
            serial: match self.serial {
                Some((true, _)) => Some(SerialConfig { stdio: true }),
                _ => None,
            },
            qmp: self.qmp.map(|(path, _)| QmpSocketConfig { path }),
            process: ProcessConfig {
                log_file: self.log_file.map(|(l, _)| l),
                pidfile: self.pidfile.map(|(p, _)| p),
                daemonize: self.daemonize.is_some(),
                seccomp: !self.disable_seccomp,
            },
            incoming: self.incoming.map(|(i, _)| i),
        };
        cfg.validate_with(&origins, probe)?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn nothing_exists(_: &Path, _: crate::validate::Want) -> crate::validate::Occupant {
        crate::validate::Occupant::Nothing
    }

    fn drive(id: &str, path: &str) -> DriveConfig {
        DriveConfig {
            id: id.into(),
            path: path.into(),
            read_only: false,
            direct: true,
            serial: None,
        }
    }

    #[test]
    fn defaults() {
        let b = Builder {
            kernel: Some(("vmlinux".into(), Origin::opt("-kernel"))),
            ..Default::default()
        };
        let cfg = b.build(nothing_exists).unwrap();
        assert_eq!(cfg.name, DEFAULT_VM_NAME);
        assert_eq!(cfg.machine.vcpus, DEFAULT_VCPUS);
        assert_eq!(cfg.machine.mem_size, DEFAULT_MEM_SIZE);
        assert!(!cfg.machine.omit_vm_memory);
        assert!(cfg.process.seccomp);
        assert_eq!(cfg.boot.cmdline, "");
        assert_eq!(cfg.serial, None);
    }

    #[test]
    fn command_line_drive_replaces_json_drive_with_same_id() {
        let mut b = Builder::default();
        b.merge_drive(drive("rootfs", "/a"), Origin::json("drive[0]"));
        b.merge_drive(drive("data", "/b"), Origin::json("drive[1]"));
        b.merge_drive(drive("rootfs", "/c"), Origin::opt("-drive"));
        b.merge_drive(drive("more", "/d"), Origin::opt("-drive"));
        let ids: Vec<_> = b
            .drives
            .iter()
            .map(|(d, _)| (d.id.as_str(), d.path.clone()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("rootfs", "/c".into()),
                ("data", "/b".into()),
                ("more", "/d".into())
            ]
        );
    }

    #[test]
    fn command_line_duplicates_are_kept_for_validation() {
        let mut b = Builder {
            kernel: Some(("vmlinux".into(), Origin::opt("-kernel"))),
            ..Default::default()
        };
        b.merge_drive(drive("rootfs", "/a"), Origin::opt("-drive"));
        b.merge_drive(drive("rootfs", "/b"), Origin::opt("-drive"));
        let e = b.build(nothing_exists).unwrap_err().to_string();
        assert_eq!(e, "-drive: duplicate drive id `rootfs`");
    }

    #[test]
    fn vcpus_are_checked_before_narrowing() {
        let b = Builder {
            kernel: Some(("vmlinux".into(), Origin::opt("-kernel"))),
            vcpus: Some((300, Origin::json("machine-config"))),
            ..Default::default()
        };
        let e = b.build(nothing_exists).unwrap_err().to_string();
        assert_eq!(
            e,
            "machine-config.vcpu_count: vCPU count 300 is out of range 1..=254"
        );
    }
}
