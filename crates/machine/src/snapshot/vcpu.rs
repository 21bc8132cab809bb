//! One vCPU's KVM state, saved and restored in the order KVM needs: MP state first, the vCPU
//! events last on save; on restore the registers before the LAPIC, MSRs after it, events last
//! (as Firecracker does). The MSRs are every one `KVM_GET_MSR_INDEX_LIST` names that this vCPU
//! can read. CPUID is not saved: a restore computes it from the same configuration, and the
//! snapshot's header pins the CPU vendor.

use kvm_bindings::{
    kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs,
    kvm_vcpu_events, kvm_xcrs, kvm_xsave, Msrs,
};
use kvm_ioctls::VcpuFd;
use serde::{Deserialize, Serialize};

/// Everything KVM keeps about a vCPU.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    pub mp_state: kvm_mp_state,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    /// The 4 KiB legacy XSAVE area (KVM_GET_XSAVE).
    pub xsave: Vec<u32>,
    pub xcrs: kvm_xcrs,
    pub debugregs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    pub msrs: Vec<kvm_msr_entry>,
    pub events: kvm_vcpu_events,
}

fn err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Reads the MSRs in `indices` that KVM lets this vCPU read (one it refuses is left out, and
/// the rest are read again).
fn read_msrs(fd: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, String> {
    let mut wanted: Vec<u32> = indices.to_vec();
    loop {
        let entries: Vec<kvm_msr_entry> = wanted
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|e| format!("MSR list: {e:?}"))?;
        let n = fd.get_msrs(&mut msrs).map_err(err("KVM_GET_MSRS"))?;
        if n == wanted.len() {
            return Ok(msrs.as_slice().to_vec());
        }
        // KVM stops at the first MSR it cannot read.
        log::debug!("snapshot: MSR 0x{:x} is not readable; left out", wanted[n]);
        wanted.remove(n);
    }
}

impl VcpuState {
    /// Saves a vCPU that is not running (its thread is parked).
    pub fn save(fd: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, String> {
        let mp_state = fd.get_mp_state().map_err(err("KVM_GET_MP_STATE"))?;
        let regs = fd.get_regs().map_err(err("KVM_GET_REGS"))?;
        let sregs = fd.get_sregs().map_err(err("KVM_GET_SREGS"))?;
        let xsave = fd
            .get_xsave()
            .map_err(err("KVM_GET_XSAVE"))?
            .region
            .to_vec();
        let xcrs = fd.get_xcrs().map_err(err("KVM_GET_XCRS"))?;
        let debugregs = fd.get_debug_regs().map_err(err("KVM_GET_DEBUGREGS"))?;
        let lapic = fd.get_lapic().map_err(err("KVM_GET_LAPIC"))?;
        let msrs = read_msrs(fd, msr_indices)?;
        let events = fd.get_vcpu_events().map_err(err("KVM_GET_VCPU_EVENTS"))?;
        Ok(VcpuState {
            mp_state,
            regs,
            sregs,
            xsave,
            xcrs,
            debugregs,
            lapic,
            msrs,
            events,
        })
    }

    /// Loads the state into a new vCPU whose CPUID is already set.
    pub fn restore(&self, fd: &VcpuFd) -> Result<(), String> {
        fd.set_mp_state(self.mp_state)
            .map_err(err("KVM_SET_MP_STATE"))?;
        fd.set_regs(&self.regs).map_err(err("KVM_SET_REGS"))?;
        fd.set_sregs(&self.sregs).map_err(err("KVM_SET_SREGS"))?;
        let mut xsave = kvm_xsave::default();
        if self.xsave.len() != xsave.region.len() {
            return Err(format!(
                "the XSAVE area is {} words, not {}",
                self.xsave.len(),
                xsave.region.len()
            ));
        }
        xsave.region.copy_from_slice(&self.xsave);
        // SAFETY: the buffer is a whole kvm_xsave that KVM itself produced for a vCPU of the
        // same CPUID (the header pinned the vendor), as KVM_SET_XSAVE requires.
        unsafe { fd.set_xsave(&xsave) }.map_err(err("KVM_SET_XSAVE"))?;
        fd.set_xcrs(&self.xcrs).map_err(err("KVM_SET_XCRS"))?;
        fd.set_debug_regs(&self.debugregs)
            .map_err(err("KVM_SET_DEBUGREGS"))?;
        fd.set_lapic(&self.lapic).map_err(err("KVM_SET_LAPIC"))?;
        let msrs = Msrs::from_entries(&self.msrs).map_err(|e| format!("MSR list: {e:?}"))?;
        let n = fd.set_msrs(&msrs).map_err(err("KVM_SET_MSRS"))?;
        if n != self.msrs.len() {
            return Err(format!(
                "KVM_SET_MSRS: KVM took {n} of {} MSRs (MSR 0x{:x} refused)",
                self.msrs.len(),
                self.msrs[n].index
            ));
        }
        fd.set_vcpu_events(&self.events)
            .map_err(err("KVM_SET_VCPU_EVENTS"))
    }
}
