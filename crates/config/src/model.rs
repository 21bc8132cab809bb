//! The one validated configuration model that both the command line and the
//! `-config` JSON file produce. Limits are checked once, in `validate`.

use std::path::PathBuf;

pub use crate::topology::{CpuPosition, CpuTopology};

/// Default VM name when `-name` / `machine-config.name` is absent.
pub const DEFAULT_VM_NAME: &str = "StratoVirt";
/// Default number of vCPUs.
pub const DEFAULT_VCPUS: u8 = 1;
/// Default guest memory: 256 MiB.
pub const DEFAULT_MEM_SIZE: u64 = 256 << 20;

/// Every knob of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub name: String,
    pub machine: MachineConfig,
    pub boot: BootSource,
    /// virtio-blk disks in command-line order: the first is `vda`.
    pub drives: Vec<DriveConfig>,
    /// virtio-net NICs in command-line order: the first is `eth0`.
    pub nets: Vec<NetConfig>,
    pub console: Option<ConsoleConfig>,
    pub vsock: Option<VsockConfig>,
    /// `-device virtio-balloon-device` / `"balloon": {...}`.
    pub balloon: Option<BalloonConfig>,
    /// `-serial stdio` / `"serial": {"stdio": true}`.
    pub serial: Option<SerialConfig>,
    /// `-qmp unix:PATH,server,nowait` or `-api-channel unix:PATH`.
    pub qmp: Option<QmpSocketConfig>,
    pub process: ProcessConfig,
    /// `-incoming file:/abs/dir`: start from a snapshot.
    pub incoming: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineType {
    Microvm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineConfig {
    pub kind: MachineType,
    pub vcpus: u8,
    /// `-smp ...,sockets=S,cores=C,threads=T`; `None`: one vCPU per socket (see
    /// [`MachineConfig::topology`]).
    pub topology: Option<CpuTopology>,
    /// Bytes.
    pub mem_size: u64,
    /// `-omit_vm_memory`, `omit_vm_memory: true`, `-machine dump-guest-core=off`.
    pub omit_vm_memory: bool,
}

impl MachineConfig {
    /// The vCPU topology, given or default.
    pub fn topology(&self) -> CpuTopology {
        self.topology
            .unwrap_or_else(|| CpuTopology::one_per_socket(u32::from(self.vcpus)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSource {
    pub kernel: PathBuf,
    pub cmdline: String,
    pub initrd: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveConfig {
    pub id: String,
    pub path: PathBuf,
    pub read_only: bool,
    /// O_DIRECT; StratoVirt's default is on.
    pub direct: bool,
    pub serial: Option<String>,
}

/// One NIC: a TAP on the host, by name or by an inherited descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetConfig {
    /// The netdev id (`-netdev id=`, JSON `iface_id`).
    pub id: String,
    /// The device id (`-device virtio-net-device,id=`) when it differs from the netdev id;
    /// QMP's `device_del` takes it.
    pub device_id: Option<String>,
    /// TAP device name on the host (`ifname=`, `netdev=`, `host_dev_name`); empty when the TAP
    /// comes as a descriptor.
    pub host_dev_name: String,
    /// An open TAP queue this process inherited (`fd=N`, `fds=N`).
    pub fd: Option<i32>,
    pub mac: Option<[u8; 6]>,
    /// `vhost=on`: the host kernel moves the frames (vhost-net).
    pub vhost: bool,
    /// An open `/dev/vhost-net` this process inherited (`vhostfd=N`).
    pub vhost_fd: Option<i32>,
}

impl NetConfig {
    /// The id `device_del` names this NIC by.
    pub fn device_id(&self) -> &str {
        self.device_id.as_deref().unwrap_or(&self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    pub id: String,
    pub socket_path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsockConfig {
    pub id: String,
    pub guest_cid: u64,
    /// The backend: the host kernel's vhost-vsock (None, the seeds' device) or, with
    /// `uds-path=`, the userspace device whose host side is this Unix socket.
    pub uds_path: Option<PathBuf>,
    /// An open `/dev/vhost-vsock` the process inherited (`vhostfd=`, what Kata passes).
    pub vhost_fd: Option<i32>,
}

/// The memory balloon: `-device virtio-balloon-device[,id=ID][,deflate-on-oom=on|off]
/// [,free-page-reporting=on|off]`, or `"balloon": {"deflate_on_oom": B, "free_page_reporting": B}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BalloonConfig {
    /// `id=`, when given (QMP never names the balloon).
    pub id: Option<String>,
    /// The guest may take pages back from the balloon when it runs out of memory.
    pub deflate_on_oom: bool,
    /// The guest reports free pages, which go back to the host.
    pub free_page_reporting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConfig {
    pub stdio: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpSocketConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessConfig {
    /// `-D [FILE]`: `Some(None)` means "-D" with no file (stderr).
    pub log_file: Option<Option<PathBuf>>,
    pub pidfile: Option<PathBuf>,
    pub daemonize: bool,
    /// On unless `-disable-seccomp`.
    pub seccomp: bool,
}
