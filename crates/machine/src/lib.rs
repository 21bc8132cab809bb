//! The x86_64 microvm machine: guest memory, boot, vCPUs and the VM's lifecycle.

pub mod boot;
pub mod cleanup;
pub mod console_escape;
pub mod exit;
pub mod guest_panic;
pub mod hotplug;
pub mod layout;
pub mod legacy;
pub mod memory;
pub mod signals;
pub mod terminal;
pub mod vcpu;
pub mod virtio_slots;
pub mod vm;

pub use exit::VmExitReason;
pub use virtio_slots::BlockSlots;
pub use vm::{CpuState, EventEmitter, Machine, MachineError, VmHandle, VmRunState};
