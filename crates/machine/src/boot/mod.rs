//! Everything that turns guest memory and a fresh vCPU into a booting Linux: kernel loading,
//! the zero page, the MP table, CPUID and the entry registers.

pub mod cpuid;
pub mod kernel;
pub mod mptable;
pub mod params;
pub mod regs;
