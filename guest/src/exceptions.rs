//! CPU exceptions: every vector 0-31 reports
//! `EXCEPTION vector=<n> rip=0x.. error=0x.. cr2=0x..` on the serial port
//! and halts the CPU for good.

use core::arch::global_asm;

use crate::{cpu, serial};

/// What the stubs push, plus the CPU's interrupt frame.
#[repr(C)]
pub struct Frame {
    /// Vector number (pushed by the stub).
    pub vector: u64,
    /// Error code (pushed by the CPU, or 0 by the stub).
    pub error: u64,
    /// Interrupted instruction.
    pub rip: u64,
    /// Interrupted code segment.
    pub cs: u64,
    /// Interrupted flags.
    pub rflags: u64,
    /// Interrupted stack pointer.
    pub rsp: u64,
    /// Interrupted stack segment.
    pub ss: u64,
}

// One 16-byte stub per vector: push a dummy error code where the CPU does
// not push one, push the vector, jump to the common path, which passes a
// pointer to the frame to `exception_entry` on a 16-byte aligned stack.
global_asm!(
    r#"
    .text
    .balign 16
    .global exception_stubs
exception_stubs:
    .set vec, 0
    .rept 32
    .balign 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp exception_common
    .set vec, vec + 1
    .endr

exception_common:
    cld
    movq %rsp, %rdi
    andq $-16, %rsp
    call {entry}
    ud2
"#,
    entry = sym exception_entry,
    options(att_syntax)
);

extern "C" {
    static exception_stubs: u8;
}

/// Address of the stub for exception `vector` (0-31).
pub fn stub(vector: u8) -> u64 {
    let base = core::ptr::addr_of!(exception_stubs) as u64;
    base + 16 * u64::from(vector)
}

extern "C" fn exception_entry(frame: &Frame) -> ! {
    report(frame);
    cpu::panic_halt()
}

fn report(frame: &Frame) {
    serial::puts("\nEXCEPTION vector=");
    serial::dec(frame.vector);
    serial::puts(" rip=");
    serial::hex(frame.rip);
    serial::puts(" error=");
    serial::hex(frame.error);
    serial::puts(" cr2=");
    serial::hex(cpu::cr2());
    serial::puts("\n");
}
