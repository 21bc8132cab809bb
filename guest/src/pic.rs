//! The legacy 8259 PICs: masked, so only the I/O APIC delivers interrupts.

use crate::cpu::outb;

/// Masks every line of both 8259s (ports that do not exist ignore it).
pub fn mask_all() {
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}
