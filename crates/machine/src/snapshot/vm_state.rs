//! The VM-wide KVM state: the two PICs and the IOAPIC, the PIT and the clock.

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use kvm_ioctls::VmFd;
use serde::{Deserialize, Serialize};

const CHIPS: [u32; 3] = [
    KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQCHIP_IOAPIC,
];

#[derive(Clone, Serialize, Deserialize)]
pub struct VmState {
    pub irqchips: Vec<kvm_irqchip>,
    pub pit: kvm_pit_state2,
    pub clock: kvm_clock_data,
}

impl VmState {
    pub fn save(vm: &VmFd) -> Result<VmState, String> {
        let mut irqchips = Vec::new();
        for chip_id in CHIPS {
            let mut chip = kvm_irqchip {
                chip_id,
                ..Default::default()
            };
            vm.get_irqchip(&mut chip)
                .map_err(|e| format!("KVM_GET_IRQCHIP {chip_id}: {e}"))?;
            irqchips.push(chip);
        }
        let pit = vm.get_pit2().map_err(|e| format!("KVM_GET_PIT2: {e}"))?;
        let mut clock = vm.get_clock().map_err(|e| format!("KVM_GET_CLOCK: {e}"))?;
        // Only the value goes back in: the flags describe the source host's clock.
        clock.flags = 0;
        Ok(VmState {
            irqchips,
            pit,
            clock,
        })
    }

    /// Loads the state into a new VM that has its irqchip and PIT.
    pub fn restore(&self, vm: &VmFd) -> Result<(), String> {
        for chip in &self.irqchips {
            vm.set_irqchip(chip)
                .map_err(|e| format!("KVM_SET_IRQCHIP {}: {e}", chip.chip_id))?;
        }
        vm.set_pit2(&self.pit)
            .map_err(|e| format!("KVM_SET_PIT2: {e}"))?;
        vm.set_clock(&self.clock)
            .map_err(|e| format!("KVM_SET_CLOCK: {e}"))
    }
}
