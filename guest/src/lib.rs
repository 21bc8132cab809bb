//! Pure, hardware-independent parts of the test kernel.
//!
//! Everything here only reads byte buffers (through [`physmem::PhysMem`]) and
//! returns plain data, so it builds both for the guest (`x86_64-unknown-none`,
//! `no_std`) and for the host, where `make -C guest test` runs its unit tests.
#![cfg_attr(not(test), no_std)]

pub mod acpi;
pub mod balloon;
pub mod bootinfo;
pub mod bytes;
pub mod cmdline;
pub mod crc32;
pub mod e820;
pub mod fixedvec;
pub mod mptable;
pub mod netframe;
pub mod num;
pub mod pagetable;
pub mod pattern;
pub mod physmem;
pub mod topology;
pub mod virtq;

#[cfg(test)]
mod testmem;
