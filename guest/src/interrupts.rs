//! Device and timer interrupts: vector layout, entry stubs, per-IRQ counters
//! and dispatch to the serial and virtio-mmio handlers.
//!
//! Vectors: 0x20 = LAPIC timer, 0x30 + n = GSI n (n < 48), 0xff = LAPIC
//! spurious (no EOI).

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::{apic, serial, virtio_mmio};

/// LAPIC timer vector.
pub const TIMER_VECTOR: u8 = 0x20;
/// Vector of GSI 0.
pub const GSI_VECTOR_BASE: u8 = 0x30;
/// GSIs with a vector of their own (two 24-pin I/O APICs).
pub const MAX_GSI: usize = 48;
/// First vector with an IRQ stub.
pub const FIRST_VECTOR: u8 = TIMER_VECTOR;
/// Last vector with an IRQ stub.
pub const LAST_VECTOR: u8 = GSI_VECTOR_BASE + MAX_GSI as u8 - 1;
/// LAPIC spurious interrupt vector.
pub const SPURIOUS_VECTOR: u8 = 0xff;

static TICKS: AtomicU64 = AtomicU64::new(0);
static GSI_COUNTS: [AtomicU64; MAX_GSI] = [const { AtomicU64::new(0) }; MAX_GSI];
static OTHER: AtomicU64 = AtomicU64::new(0);
/// GSI of the serial port (ISA IRQ 4 unless the firmware tables remap it).
static SERIAL_GSI: AtomicU64 = AtomicU64::new(serial::COM1_IRQ as u64);

// One 16-byte stub per vector from FIRST_VECTOR to LAST_VECTOR. The common
// path saves the caller-saved registers (the Rust code is integer-only, so
// there is no FPU/SSE state), aligns the stack, calls `irq_dispatch(vector)`
// and returns with iretq.
global_asm!(
    r#"
    .text
    .balign 16
    .global irq_stubs
irq_stubs:
    .set vec, {first}
    .rept {count}
    .balign 16
    pushq $vec
    jmp irq_common
    .set vec, vec + 1
    .endr

    .balign 16
    .global irq_spurious_stub
irq_spurious_stub:
    iretq

irq_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %rbp
    movq 80(%rsp), %rdi
    movq %rsp, %rbp
    andq $-16, %rsp
    cld
    call {dispatch}
    movq %rbp, %rsp
    popq %rbp
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $8, %rsp
    iretq
"#,
    first = const FIRST_VECTOR,
    count = const LAST_VECTOR - FIRST_VECTOR + 1,
    dispatch = sym irq_dispatch,
    options(att_syntax)
);

extern "C" {
    static irq_stubs: u8;
    static irq_spurious_stub: u8;
}

/// Address of the stub for `vector` (FIRST_VECTOR..=LAST_VECTOR).
pub fn stub(vector: u8) -> u64 {
    let base = core::ptr::addr_of!(irq_stubs) as u64;
    base + 16 * u64::from(vector - FIRST_VECTOR)
}

/// Address of the spurious-interrupt stub.
pub fn spurious_stub() -> u64 {
    core::ptr::addr_of!(irq_spurious_stub) as u64
}

/// Vector for GSI `gsi`, if it has one.
pub fn gsi_vector(gsi: u32) -> Option<u8> {
    (gsi < MAX_GSI as u32).then(|| GSI_VECTOR_BASE + gsi as u8)
}

/// Tells the dispatcher which GSI the serial port raises.
pub fn set_serial_gsi(gsi: u32) {
    SERIAL_GSI.store(u64::from(gsi), Ordering::Relaxed);
}

extern "C" fn irq_dispatch(vector: u64) {
    if vector == u64::from(TIMER_VECTOR) {
        TICKS.fetch_add(1, Ordering::Relaxed);
    } else if let Some(gsi) = vector.checked_sub(u64::from(GSI_VECTOR_BASE)) {
        if let Some(count) = GSI_COUNTS.get(gsi as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        if gsi == SERIAL_GSI.load(Ordering::Relaxed) {
            serial::on_irq();
        }
        virtio_mmio::on_irq(gsi as u32);
    } else {
        OTHER.fetch_add(1, Ordering::Relaxed);
    }
    apic::eoi();
}

/// Timer interrupts taken on the boot CPU.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Interrupts taken for `gsi`.
pub fn gsi_count(gsi: usize) -> u64 {
    GSI_COUNTS.get(gsi).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Interrupts on vectors with no meaning here.
pub fn other_count() -> u64 {
    OTHER.load(Ordering::Relaxed)
}
