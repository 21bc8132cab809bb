//! The x86_64 microvm machine: guest memory, boot, vCPUs and the VM's lifecycle.

pub mod attach;
pub mod boot;
pub mod builder;
pub mod cleanup;
pub mod coalesced;
pub mod console_escape;
pub mod exit;
pub mod guest_panic;
pub mod hotplug;
pub mod layout;
pub mod legacy;
pub mod memory;
pub mod signals;
pub mod slots;
pub mod snapshot;
pub mod terminal;
pub mod vcpu;
pub mod vm;

pub use exit::VmExitReason;
pub use slots::{SlotKind, SlotTable};
pub use vm::{CpuState, EventEmitter, Machine, MachineError, VmHandle, VmRunState};
