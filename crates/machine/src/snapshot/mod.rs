//! VM snapshots (QMP `migrate` to `file:<dir>`, `-incoming file:<dir>`): the machine's state
//! tree and the two halves that write and read it.
//!
//! The tree ([`MachineState`]) is made of each component's own state, saved next to its code:
//! the vCPUs ([`vcpu`]), the VM's irqchips, PIT and clock ([`vm_state`]), the legacy devices
//! (`devices::legacy`, `Persist`), and each virtio slot's transport and device
//! (`devices::virtio::persist`). [`save`] writes it with the guest memory through the
//! `snapshot` crate's format; [`crate::builder`] rebuilds a machine from it with the same attach
//! steps a boot uses.
//!
//! A new device must implement its part: a variant of `devices::virtio::DeviceState` filled by
//! its `VirtioDevice::save`, and its rebuilding in its attach step.

pub mod save;
pub mod state;
pub mod vcpu;
pub mod vm_state;

pub use save::{SaveReport, SnapshotSource};
pub use state::{LegacyState, MachineState, MemoryRegionState, SlotState};
