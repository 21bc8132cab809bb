//! Writing a snapshot of a paused VM: every component's state into `state`, guest RAM into the
//! sparse `memory`, both under temporary names until complete.

use super::state::{memory_layout, ConfigIdentity, LegacyState, MachineState, SlotState};
use super::vm_state::VmState;
use crate::slots::{SlotKind, SlotTable};
use crate::vcpu::VcpuSet;
use devices::bus::lock;
use devices::legacy::{Rtc, SerialDevice, I8042};
use devices::Persist;
use kvm_ioctls::VmFd;
use snapshot::memory::{data_extents, write_regions, Region};
use snapshot::{Header, SnapshotDir};
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// What a save needs of a running machine.
pub struct SnapshotSource {
    pub vm: Arc<VmFd>,
    pub mem: GuestMemoryMmap,
    /// For a VM that was itself restored: the memory file its RAM is mapped from, whose data
    /// may sit in pages the VM never touched.
    pub template: Option<Arc<File>>,
    pub serial: Arc<Mutex<SerialDevice>>,
    pub i8042: Arc<Mutex<I8042>>,
    pub rtc: Arc<Mutex<Rtc>>,
    pub slots: SlotTable,
    pub config: ConfigIdentity,
    pub mem_size: u64,
}

/// What a save did.
#[derive(Debug, Clone, Copy)]
pub struct SaveReport {
    pub state_bytes: usize,
    pub memory_bytes_written: u64,
    pub pages_read: u64,
    pub elapsed: Duration,
}

fn kind_name(kind: SlotKind) -> &'static str {
    match kind {
        SlotKind::Disk => "disk",
        SlotKind::Nic => "nic",
        SlotKind::Fixed => "fixed",
    }
}

impl SnapshotSource {
    /// Whether every device can be part of a snapshot: asked before the VM is paused, so a
    /// refusal changes nothing.
    pub fn check_supported(&self) -> Result<(), String> {
        for s in self.slots.slots() {
            if let Some(t) = &s.transport {
                lock(t).device().can_save()?;
            }
        }
        Ok(())
    }

    fn legacy_state(&self) -> LegacyState {
        LegacyState {
            serial: lock(&self.serial).save(),
            i8042: lock(&self.i8042).save(),
            rtc: lock(&self.rtc).save(),
        }
    }

    fn slot_states(&self, ids: &[Option<String>]) -> Result<Vec<SlotState>, String> {
        self.slots
            .slots()
            .iter()
            .map(|s| {
                let transport = s
                    .transport
                    .as_ref()
                    .ok_or_else(|| format!("slot {} has no transport", s.index))?;
                let state = lock(transport)
                    .save()
                    .map_err(|e| format!("slot {}: {e}", s.index))?;
                Ok(SlotState {
                    kind: kind_name(s.kind).to_string(),
                    id: ids.get(s.index).cloned().flatten(),
                    transport: state,
                })
            })
            .collect()
    }

    fn regions(&self) -> Result<Vec<Region>, String> {
        let layout = memory_layout(self.mem_size);
        let mut out = Vec::new();
        for (region, place) in self.mem.iter().zip(&layout) {
            // SAFETY: the region is a live mapping owned by `self.mem`; the VM is paused and its
            // devices have stopped taking requests, so nothing writes it during the save.
            let mut r =
                unsafe { Region::new(region.as_ptr(), region.len() as usize, place.file_offset) };
            if let Some(t) = &self.template {
                r.may_hold_data = data_extents(t, place.file_offset, place.size)
                    .map_err(|e| format!("reading the template's extents: {e}"))?;
            }
            out.push(r);
        }
        Ok(out)
    }

    /// Saves the paused VM into `dir` (whose checks `SnapshotDir::prepare` made); `slot_ids`
    /// are the ids of the devices in the slots now (hot-plug knows them).
    pub fn save(
        &self,
        vcpus: &VcpuSet,
        dir: &SnapshotDir,
        slot_ids: &[Option<String>],
    ) -> Result<SaveReport, String> {
        let start = Instant::now();
        let result = self.save_parked(vcpus, dir, slot_ids, start);
        // Whatever happened, the devices serve their queues again (the VM itself stays
        // paused until `cont`).
        for s in self.slots.slots() {
            if let Some(t) = &s.transport {
                lock(t).resume_after_save();
            }
        }
        result
    }

    fn save_parked(
        &self,
        vcpus: &VcpuSet,
        dir: &SnapshotDir,
        slot_ids: &[Option<String>],
        start: Instant,
    ) -> Result<SaveReport, String> {
        // Devices first: each finishes its request in progress and takes nothing more from
        // its queues, so the memory written below is what the queues' positions say.
        let slots = self.slot_states(slot_ids)?;
        let state = MachineState {
            config: self.config.clone(),
            memory: memory_layout(self.mem_size),
            vm: VmState::save(&self.vm)?,
            vcpus: vcpus.save_all()?,
            legacy: self.legacy_state(),
            slots,
        };
        let body = serde_json::to_vec(&state).map_err(|e| format!("encoding the state: {e}"))?;
        let result = (|| {
            let memory = dir
                .create_memory(state.memory_size())
                .map_err(|e| e.to_string())?;
            let stats = write_regions(&memory, &self.regions()?)
                .map_err(|e| format!("writing {}: {e}", dir.memory_path().display()))?;
            dir.write_state(&Header::this_host(), &body)
                .map_err(|e| e.to_string())?;
            dir.commit(&memory).map_err(|e| e.to_string())?;
            Ok(stats)
        })();
        match result {
            Ok(stats) => Ok(SaveReport {
                state_bytes: body.len(),
                memory_bytes_written: stats.bytes_written,
                pages_read: stats.pages_read,
                elapsed: start.elapsed(),
            }),
            Err(e) => {
                dir.abandon();
                Err(e)
            }
        }
    }
}

/// The directory of a `file:` URI.
pub fn dir_of_uri(uri: &str) -> Result<SnapshotDir, String> {
    let path = uri
        .strip_prefix("file:")
        .ok_or_else(|| format!("only file:/abs/dir URIs are supported, got '{uri}'"))?;
    SnapshotDir::new(Path::new(path)).map_err(|e| e.to_string())
}
