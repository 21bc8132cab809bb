//! Argument and reply types of the QMP commands.
//!
//! Reply structs are serialised straight to the wire (never through
//! `serde_json::Value`), so their fields are declared in the order the seed
//! transcripts show them. Argument structs all carry
//! `#[serde(deny_unknown_fields)]` so an unknown member is rejected before the
//! command has any side effect.

use serde::{Deserialize, Serialize};

/// QEMU version triple reported in the greeting and by `query-version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionTriple {
    /// Micro version (declared first: the seeds print `micro, minor, major`).
    pub micro: u32,
    /// Minor version.
    pub minor: u32,
    /// Major version.
    pub major: u32,
}

/// `{"qemu":{"micro":1,"minor":0,"major":4},"package":""}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The emulated QEMU version.
    pub qemu: VersionTriple,
    /// Package string (empty).
    pub package: String,
}

impl VersionInfo {
    /// The version this VMM reports: QEMU 4.0.1 with an empty package.
    pub fn current() -> Self {
        VersionInfo {
            qemu: VersionTriple {
                micro: 1,
                minor: 0,
                major: 4,
            },
            package: String::new(),
        }
    }
}

/// The VM run state, as QEMU's `RunState` enum spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Created, not started yet.
    Prelaunch,
    /// vCPUs running.
    Running,
    /// vCPUs paused (by `stop`).
    Paused,
    /// Waiting for an incoming snapshot.
    Inmigrate,
    /// A snapshot was taken; the VM stays paused.
    Postmigrate,
    /// Guest shut down.
    Shutdown,
    /// Guest panicked.
    GuestPanicked,
    /// An internal error stopped the VM.
    InternalError,
}

/// Reply of `query-status`: `{"running":bool,"singlestep":false,"status":...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// True only when `status` is `running` (QEMU semantics).
    pub running: bool,
    /// Always false.
    pub singlestep: bool,
    /// The run state.
    pub status: RunState,
}

impl StatusInfo {
    /// Status for the given state; `running` is derived from it.
    pub fn new(status: RunState) -> Self {
        StatusInfo {
            running: status == RunState::Running,
            singlestep: false,
            status,
        }
    }
}

/// vCPU topology properties, `{"core-id":..,"socket-id":..,"thread-id":..}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CpuInstanceProperties {
    /// Core index within the socket.
    pub core_id: u32,
    /// Socket index.
    pub socket_id: u32,
    /// Thread index within the core.
    pub thread_id: u32,
}

/// One entry of `query-cpus`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// vCPU index.
    #[serde(rename = "CPU")]
    pub cpu: u32,
    /// Architecture name (`"x86"` on x86_64).
    pub arch: String,
    /// Always true, as in the seeds.
    pub current: bool,
    /// Whether the vCPU is halted.
    pub halted: bool,
    /// Topology.
    pub props: CpuInstanceProperties,
    /// `/machine/unattached/device[N]`.
    pub qom_path: String,
    /// Host thread id of the vCPU thread.
    pub thread_id: i64,
}

/// The architecture name QMP uses for the host this is built for.
pub const HOST_ARCH: &str = if cfg!(target_arch = "aarch64") {
    "arm"
} else {
    "x86"
};

/// The CPU model name `query-hotpluggable-cpus` reports for this host.
pub const HOST_CPU_TYPE: &str = if cfg!(target_arch = "aarch64") {
    "host-aarch64-cpu"
} else {
    "host-x86-cpu"
};

/// QOM path of vCPU `index`: `/machine/unattached/device[index]`.
pub fn cpu_qom_path(index: u32) -> String {
    format!("/machine/unattached/device[{index}]")
}

impl CpuInfo {
    /// A `query-cpus` entry for vCPU `index` on this host's architecture.
    pub fn new(index: u32, props: CpuInstanceProperties, halted: bool, thread_id: i64) -> Self {
        CpuInfo {
            cpu: index,
            arch: HOST_ARCH.to_string(),
            current: true,
            halted,
            props,
            qom_path: cpu_qom_path(index),
            thread_id,
        }
    }
}

/// One entry of `query-hotpluggable-cpus`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotpluggableCpu {
    /// Topology.
    pub props: CpuInstanceProperties,
    /// Present only for online vCPUs.
    #[serde(rename = "qom-path", skip_serializing_if = "Option::is_none", default)]
    pub qom_path: Option<String>,
    /// CPU model (`"host-x86-cpu"`).
    #[serde(rename = "type")]
    pub cpu_type: String,
    /// Always 1.
    #[serde(rename = "vcpus-count")]
    pub vcpus_count: u32,
}

impl HotpluggableCpu {
    /// Entry for vCPU `index`; `qom-path` is set only when `online`.
    pub fn new(index: u32, props: CpuInstanceProperties, online: bool) -> Self {
        HotpluggableCpu {
            props,
            qom_path: online.then(|| cpu_qom_path(index)),
            cpu_type: HOST_CPU_TYPE.to_string(),
            vcpus_count: 1,
        }
    }
}

/// One entry of `query-commands`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// Command name.
    pub name: String,
}

/// Arguments of a command that takes none: any member is unexpected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArguments {}

/// Arguments of `qmp_capabilities`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QmpCapabilitiesArguments {
    /// Capabilities to enable; none are offered, so it must be empty.
    #[serde(default)]
    pub enable: Option<Vec<String>>,
}

/// An empty object reply, `{}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_matches_seeds() {
        assert_eq!(
            serde_json::to_string(&StatusInfo::new(RunState::Running)).unwrap(),
            r#"{"running":true,"singlestep":false,"status":"running"}"#
        );
        assert_eq!(
            serde_json::to_string(&StatusInfo::new(RunState::Paused)).unwrap(),
            r#"{"running":false,"singlestep":false,"status":"paused"}"#
        );
        let props = CpuInstanceProperties {
            core_id: 0,
            socket_id: 1,
            thread_id: 0,
        };
        let mut cpu = CpuInfo::new(1, props, false, 8440);
        cpu.arch = "x86".into();
        assert_eq!(
            serde_json::to_string(&cpu).unwrap(),
            r#"{"CPU":1,"arch":"x86","current":true,"halted":false,"props":{"core-id":0,"socket-id":1,"thread-id":0},"qom_path":"/machine/unattached/device[1]","thread_id":8440}"#
        );
        let mut hp = HotpluggableCpu::new(1, props, true);
        hp.cpu_type = "host-x86-cpu".into();
        assert_eq!(
            serde_json::to_string(&hp).unwrap(),
            r#"{"props":{"core-id":0,"socket-id":1,"thread-id":0},"qom-path":"/machine/unattached/device[1]","type":"host-x86-cpu","vcpus-count":1}"#
        );
        hp.qom_path = None;
        assert_eq!(
            serde_json::to_string(&hp).unwrap(),
            r#"{"props":{"core-id":0,"socket-id":1,"thread-id":0},"type":"host-x86-cpu","vcpus-count":1}"#
        );
        assert_eq!(
            serde_json::to_string(&VersionInfo::current()).unwrap(),
            r#"{"qemu":{"micro":1,"minor":0,"major":4},"package":""}"#
        );
    }
}
