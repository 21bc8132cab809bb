//! The state tree of a snapshot, and the checks a restore makes against the configuration it
//! is given.

use super::vcpu::VcpuState;
use super::vm_state::VmState;
use crate::memory::ram_ranges;
use config::VmConfig;
use devices::legacy::{I8042State, RtcState, SerialDeviceState};
use devices::virtio::TransportState;
use serde::{Deserialize, Serialize};

/// Where one guest RAM region lives in the memory file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRegionState {
    pub guest_addr: u64,
    pub size: u64,
    pub file_offset: u64,
}

/// The legacy devices.
#[derive(Clone, Serialize, Deserialize)]
pub struct LegacyState {
    pub serial: SerialDeviceState,
    pub i8042: I8042State,
    pub rtc: RtcState,
}

/// One virtio slot: what it holds (kind and device id) and its transport.
#[derive(Clone, Serialize, Deserialize)]
pub struct SlotState {
    /// "disk", "nic" or "fixed".
    pub kind: String,
    /// The device id (a drive id, a hot-plugged node), None for an empty slot.
    pub id: Option<String>,
    pub transport: TransportState,
}

/// What the configuration of the snapshotted VM was, as far as a restore must match it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigIdentity {
    pub vcpus: u8,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    pub mem_size: u64,
}

impl ConfigIdentity {
    pub fn of(cfg: &VmConfig) -> Self {
        let t = cfg.machine.topology();
        ConfigIdentity {
            vcpus: cfg.machine.vcpus,
            sockets: t.sockets,
            cores: t.cores,
            threads: t.threads,
            mem_size: cfg.machine.mem_size,
        }
    }

    /// One line saying what differs, if anything.
    pub fn check(&self, cfg: &VmConfig) -> Result<(), String> {
        let now = ConfigIdentity::of(cfg);
        if self.vcpus != now.vcpus {
            return Err(format!(
                "the snapshot has {} vCPUs, the configuration {}",
                self.vcpus, now.vcpus
            ));
        }
        if (self.sockets, self.cores, self.threads) != (now.sockets, now.cores, now.threads) {
            return Err(format!(
                "the snapshot's CPU topology is sockets={},cores={},threads={}, the configuration's sockets={},cores={},threads={}",
                self.sockets, self.cores, self.threads, now.sockets, now.cores, now.threads
            ));
        }
        if self.mem_size != now.mem_size {
            return Err(format!(
                "the snapshot has {} MiB of memory, the configuration {} MiB",
                self.mem_size >> 20,
                now.mem_size >> 20
            ));
        }
        Ok(())
    }
}

/// The whole machine.
#[derive(Serialize, Deserialize)]
pub struct MachineState {
    pub config: ConfigIdentity,
    pub memory: Vec<MemoryRegionState>,
    pub vm: VmState,
    pub vcpus: Vec<VcpuState>,
    pub legacy: LegacyState,
    pub slots: Vec<SlotState>,
}

/// The memory file's layout for `mem_size` bytes: the RAM regions back to back.
pub fn memory_layout(mem_size: u64) -> Vec<MemoryRegionState> {
    let mut offset = 0;
    ram_ranges(mem_size)
        .into_iter()
        .map(|(addr, size)| {
            let r = MemoryRegionState {
                guest_addr: addr.0,
                size,
                file_offset: offset,
            };
            offset += size;
            r
        })
        .collect()
}

impl MachineState {
    /// Checks that `cfg` describes the machine the snapshot was taken of (devices are
    /// checked slot by slot as they are rebuilt).
    pub fn check(&self, cfg: &VmConfig) -> Result<(), String> {
        self.config.check(cfg)?;
        if self.memory != memory_layout(cfg.machine.mem_size) {
            return Err("the snapshot's memory layout is not this machine's".into());
        }
        if self.vcpus.len() != usize::from(cfg.machine.vcpus) {
            return Err(format!(
                "the snapshot holds {} vCPU states for {} vCPUs",
                self.vcpus.len(),
                cfg.machine.vcpus
            ));
        }
        Ok(())
    }

    /// The memory file's size.
    pub fn memory_size(&self) -> u64 {
        self.memory.iter().map(|r| r.size).sum()
    }
}
