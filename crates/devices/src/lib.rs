//! Emulated devices: the I/O and MMIO bus, legacy PC devices and (later) virtio devices.

pub mod bus;
pub mod legacy;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
