//! The interrupt descriptor table, shared by all CPUs: exceptions 0-31
//! (with #DF, NMI and #MC on their own IST stacks), the device/timer vectors
//! and the LAPIC spurious vector.

use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut};

use crate::exceptions;
use crate::gdt::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI, KERNEL_CS};
use crate::interrupts;

#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

const EMPTY: Gate = Gate {
    offset_low: 0,
    selector: 0,
    ist: 0,
    type_attr: 0,
    offset_mid: 0,
    offset_high: 0,
    reserved: 0,
};

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt = Idt([EMPTY; 256]);

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

fn gate(handler: u64, ist: u8) -> Gate {
    Gate {
        offset_low: handler as u16,
        selector: KERNEL_CS,
        ist,
        type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate
        offset_mid: (handler >> 16) as u16,
        offset_high: (handler >> 32) as u32,
        reserved: 0,
    }
}

/// Fills the IDT. Boot CPU only, before any CPU loads it.
pub fn init() {
    let idt = addr_of_mut!(IDT);
    // SAFETY: runs once on the boot CPU before the IDT is loaded anywhere.
    unsafe {
        for v in 0..32u8 {
            let ist = match v {
                2 => IST_NMI,
                8 => IST_DOUBLE_FAULT,
                18 => IST_MACHINE_CHECK,
                _ => 0,
            };
            (*idt).0[usize::from(v)] = gate(exceptions::stub(v), ist);
        }
        for v in interrupts::FIRST_VECTOR..=interrupts::LAST_VECTOR {
            (*idt).0[usize::from(v)] = gate(interrupts::stub(v), 0);
        }
        (*idt).0[usize::from(interrupts::SPURIOUS_VECTOR)] = gate(interrupts::spurious_stub(), 0);
    }
}

/// Loads the IDT on the calling CPU.
pub fn load() {
    let ptr = Pointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: addr_of!(IDT) as u64,
    };
    // SAFETY: the IDT is initialised and lives for the whole run.
    unsafe { asm!("lidt [{}]", in(reg) &ptr, options(readonly, nostack, preserves_flags)) }
}

/// Forces a triple fault: empty IDT, then a fault that cannot be delivered
/// (nor can the #DF that follows), so the CPU shuts down and the machine
/// resets. The fault is a page fault on an unmapped address, then (should
/// that return) a #GP from a non-canonical one: instructions like `int3`
/// are not emulated on PVM hosts, memory faults are.
pub fn triple_fault(unmapped: u64) -> ! {
    let ptr = Pointer { limit: 0, base: 0 };
    // SAFETY: deliberately makes every interrupt undeliverable, then reads
    // an unmapped and a non-canonical address; the first fault escalates to
    // a shutdown. Nothing is written.
    unsafe {
        asm!(
            "cli",
            "lidt [{ptr}]",
            "mov {tmp}, [{unmapped}]",
            "mov {tmp}, [{noncanon}]",
            ptr = in(reg) &ptr,
            unmapped = in(reg) unmapped,
            noncanon = in(reg) 0x8000_0000_0000_0000u64,
            tmp = out(reg) _,
            options(readonly, nostack),
        )
    }
    crate::cpu::halt_forever()
}
