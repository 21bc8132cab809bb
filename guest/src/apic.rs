//! Local APIC in xAPIC (MMIO) mode: enabling, EOI, the periodic timer and
//! the INIT/STARTUP IPIs that start the application processors.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::{cpu, interrupts, phys};

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;

const REG_ID: u64 = 0x20;
const REG_TPR: u64 = 0x80;
const REG_EOI: u64 = 0xb0;
const REG_SVR: u64 = 0xf0;
const REG_ESR: u64 = 0x280;
const REG_ICR_LOW: u64 = 0x300;
const REG_ICR_HIGH: u64 = 0x310;
const REG_LVT_TIMER: u64 = 0x320;
const REG_LVT_LINT0: u64 = 0x350;
const REG_LVT_LINT1: u64 = 0x360;
const REG_LVT_ERROR: u64 = 0x370;
const REG_TIMER_INIT: u64 = 0x380;
const REG_TIMER_DIV: u64 = 0x3e0;

const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
const LVT_NMI: u32 = 0b100 << 8;
const TIMER_PERIODIC: u32 = 1 << 17;
const ICR_PENDING: u32 = 1 << 12;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_ASSERT: u32 = 1 << 14;

/// Timer divide configuration 0b0011: divide by 16.
const TIMER_DIV_16: u32 = 0x3;
/// Initial count for ~100 Hz with KVM's 1 GHz APIC bus clock / 16 (the rate
/// is not calibrated; any steady rate will do).
pub const TIMER_COUNT_100HZ: u32 = 625_000;

static BASE: AtomicU64 = AtomicU64::new(0xfee0_0000);

fn read(reg: u64) -> u32 {
    // SAFETY: BASE is the LAPIC MMIO page (identity mapped below 4 GiB) and
    // `reg` one of its 16-byte aligned registers.
    unsafe { phys::read32(BASE.load(Ordering::Relaxed) + reg) }
}

fn write(reg: u64, value: u32) {
    // SAFETY: as for `read`; LAPIC register writes only affect the APIC.
    unsafe { phys::write32(BASE.load(Ordering::Relaxed) + reg, value) }
}

/// Uses the LAPIC at `addr` (from the MP table/MADT) on every CPU, and makes
/// sure the boot CPU's APIC is globally enabled at that address.
pub fn set_base(addr: u64) {
    BASE.store(addr, Ordering::Relaxed);
}

/// Enables the calling CPU's LAPIC: globally (IA32_APIC_BASE), software
/// enable with the spurious vector, all priorities accepted, LINT0 (the
/// 8259's ExtINT path) masked, LINT1 = NMI, error interrupt masked.
pub fn init_cpu() {
    let msr = cpu::rdmsr(IA32_APIC_BASE);
    if msr & APIC_BASE_ENABLE == 0 {
        // Keeps the base address and x2APIC bit as they are.
        cpu::wrmsr(IA32_APIC_BASE, msr | APIC_BASE_ENABLE);
    }
    write(REG_SVR, SVR_ENABLE | u32::from(interrupts::SPURIOUS_VECTOR));
    write(REG_TPR, 0);
    write(REG_LVT_LINT0, LVT_MASKED);
    write(REG_LVT_LINT1, LVT_NMI);
    write(REG_LVT_ERROR, LVT_MASKED);
    write(REG_ESR, 0);
}

/// The calling CPU's APIC id.
pub fn id() -> u32 {
    read(REG_ID) >> 24
}

/// Signals end of interrupt.
pub fn eoi() {
    write(REG_EOI, 0);
}

/// Starts the periodic timer on the calling CPU.
pub fn start_timer(vector: u8, count: u32) {
    write(REG_TIMER_DIV, TIMER_DIV_16);
    write(REG_LVT_TIMER, TIMER_PERIODIC | u32::from(vector));
    write(REG_TIMER_INIT, count);
}

fn wait_icr_idle() -> bool {
    for _ in 0..10_000 {
        if read(REG_ICR_LOW) & ICR_PENDING == 0 {
            return true;
        }
        cpu::pause();
    }
    false
}

fn send_ipi(apic_id: u32, low: u32) {
    write(REG_ICR_HIGH, apic_id << 24);
    write(REG_ICR_LOW, low);
    wait_icr_idle();
}

/// Sends INIT (level assert) to `apic_id`.
pub fn send_init(apic_id: u32) {
    send_ipi(apic_id, ICR_INIT | ICR_ASSERT);
}

/// Sends a STARTUP IPI: the CPU starts in real mode at `page << 12`.
pub fn send_startup(apic_id: u32, page: u8) {
    send_ipi(apic_id, ICR_STARTUP | ICR_ASSERT | u32::from(page));
}
