//! The x86_64 microvm machine: guest memory, boot, vCPUs and the VM's lifecycle.

pub mod boot;
pub mod layout;
pub mod memory;
