//! The machine as QMP sees it: `VmControl` over a running VM.

use config::VmConfig;
use machine::{VmExitReason, VmHandle};
use qmp::{CpuInfo, CpuInstanceProperties, HotpluggableCpu, QmpError, RunState, StatusInfo};
use std::sync::Arc;

pub struct VmController {
    vm: Arc<VmHandle>,
    vcpus: u8,
}

impl VmController {
    pub fn new(vm: Arc<VmHandle>, cfg: &VmConfig) -> Self {
        VmController {
            vm,
            vcpus: cfg.machine.vcpus,
        }
    }
}

/// StratoVirt's microvm topology: every vCPU is its own socket.
fn props(index: u32) -> CpuInstanceProperties {
    CpuInstanceProperties {
        core_id: 0,
        socket_id: index,
        thread_id: 0,
    }
}

impl qmp::VmControl for VmController {
    fn query_status(&self) -> StatusInfo {
        StatusInfo::new(if self.vm.is_running() {
            RunState::Running
        } else {
            RunState::Paused
        })
    }

    fn stop(&self) -> Result<(), QmpError> {
        self.vm.pause().map_err(QmpError::generic)?;
        log::info!("VM paused");
        Ok(())
    }

    fn cont(&self) -> Result<(), QmpError> {
        self.vm.resume().map_err(QmpError::generic)?;
        log::info!("VM resumed");
        Ok(())
    }

    fn query_cpus(&self) -> Vec<CpuInfo> {
        self.vm
            .cpus()
            .into_iter()
            .map(|c| {
                let i = u32::from(c.id);
                CpuInfo::new(i, props(i), c.halted, i64::from(c.thread_id))
            })
            .collect()
    }

    fn query_hotpluggable_cpus(&self) -> Vec<HotpluggableCpu> {
        (0..u32::from(self.vcpus))
            .map(|i| HotpluggableCpu::new(i, props(i), true))
            .collect()
    }

    fn quit(&self) {
        self.vm.request_exit(VmExitReason::HostQmpQuit);
    }
}
