//! `panic` (a deliberate page fault) and `poweroff` (reset like `reboot=k`).

use super::{Args, CmdError, Command};
use crate::{cpu, idt, serial};

/// An address no page table entry maps (PML4 slot 254).
const UNMAPPED: u64 = 0x7f00_0000_0000;

/// The commands of this group.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "panic",
        usage: "panic",
        help: "read an unmapped address: page fault report, then halt",
        run: panic,
    },
    Command {
        name: "poweroff",
        usage: "poweroff",
        help: "reset via the i8042 (0xFE to port 0x64), else a triple fault",
        run: poweroff,
    },
];

fn panic(_: &Args) -> Result<(), CmdError> {
    // SAFETY: deliberately faults: UNMAPPED is not mapped, so the read
    // raises #PF, whose handler reports it and halts; it never returns.
    let v = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    Err(CmdError::hex("read of unmapped memory returned ", v))
}

fn poweroff(_: &Args) -> Result<(), CmdError> {
    serial::puts("OK\n");
    cpu::cli();
    // Pulse the reset line through the keyboard controller (what Linux
    // does for reboot=k).
    cpu::outb(0x64, 0xfe);
    for _ in 0..10_000 {
        cpu::pause();
    }
    idt::triple_fault(UNMAPPED)
}
