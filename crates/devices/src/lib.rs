//! Emulated devices: the I/O and MMIO bus, legacy PC devices, pvpanic and virtio devices.

pub mod bus;
pub mod legacy;
pub mod persist;
pub mod pvpanic;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
pub use persist::Persist;
