//! Thin wrappers around privileged instructions: port I/O, MSRs, control
//! registers, interrupt flag and halting.

use core::arch::asm;

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects visible to Rust; the kernel
    // runs at CPL 0 so the instruction cannot fault.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    }
}

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    value
}

/// Reads a model-specific register.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called with architectural MSRs that exist on every
    // x86_64 CPU (IA32_APIC_BASE, EFER); no memory effects.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    u64::from(lo) | (u64::from(hi) << 32)
}

/// Writes a model-specific register.
pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: callers write architectural MSRs with values that keep the
    // current mode valid (see their SAFETY notes); no Rust-visible memory.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack, preserves_flags))
    }
}

/// CR2: the faulting address of the last page fault.
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Loads CR3 (switches page tables; flushes non-global TLB entries).
///
/// # Safety
/// `pml4` must be a valid PML4 that maps the running code, its stack and
/// every address the kernel touches afterwards, the same way as before.
pub unsafe fn write_cr3(pml4: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) }
}

/// `cpuid(leaf, 0)` as (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Disables maskable interrupts.
pub fn cli() {
    // SAFETY: only changes IF.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Enables maskable interrupts.
pub fn sti() {
    // SAFETY: only changes IF; the IDT is loaded before the first `sti`.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// Enables interrupts and halts until one arrives, with no window for an
/// interrupt to slip in between (`sti` takes effect after `hlt` starts).
pub fn sti_hlt() {
    // SAFETY: as for `sti`; `hlt` just waits.
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) }
}

/// A cheap pause inside spin loops.
pub fn pause() {
    core::hint::spin_loop();
}

/// Stops this CPU for good: interrupts off, `hlt` forever (an NMI or SMI
/// only wakes it up to halt again).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli/hlt have no memory effects.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// QEMU's ISA pvpanic port. Writing [`PVPANIC_PANICKED`] tells the host the kernel panicked;
/// where no such device exists the write goes nowhere.
pub const PVPANIC_PORT: u16 = 0x505;
/// The pvpanic "guest panicked" event bit.
pub const PVPANIC_PANICKED: u8 = 1;

/// Tells the host (pvpanic) that the kernel cannot go on, then halts for good.
pub fn panic_halt() -> ! {
    outb(PVPANIC_PORT, PVPANIC_PANICKED);
    halt_forever()
}

/// `cpuid(leaf, subleaf)` as (eax, ebx, ecx, edx).
pub fn cpuid_count(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Full memory barrier: orders earlier stores before later loads (what
/// x86's TSO otherwise lets pass), for rings shared with a device. A locked
/// no-op on the stack, not `mfence`, which is an SSE2 instruction.
pub fn mb() {
    // SAFETY: or-ing 0 into the word at the stack pointer leaves it as it
    // was; the lock prefix makes it a full barrier. Only the flags change.
    unsafe { asm!("lock or dword ptr [rsp], 0", options(nostack)) }
}
