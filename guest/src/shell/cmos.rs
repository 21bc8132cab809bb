//! `cmos`: the CMOS RTC's registers as a driver reaches them, an index written to port 0x70
//! then the data port 0x71 read or written.

use super::{Args, CmdError, Command};
use crate::{cpu, serial};

const INDEX: u16 = 0x70;
const DATA: u16 = 0x71;

/// The commands of this group.
pub const COMMANDS: &[Command] = &[Command {
    name: "cmos",
    usage: "cmos <reg>[=<value>]...",
    help: "read (or write, with =) CMOS registers in order: one `0xREG=0xVALUE` per register",
    run: cmos,
}];

fn cmos(args: &Args) -> Result<(), CmdError> {
    if args.len() == 0 {
        return Err(CmdError::msg("usage: cmos <reg>[=<value>]..."));
    }
    for i in 0..args.len() {
        let word = args.get(i).unwrap_or_default();
        let (reg, value) = match word.iter().position(|&b| b == b'=') {
            Some(at) => (&word[..at], Some(&word[at + 1..])),
            None => (word, None),
        };
        let reg = testkernel::num::parse_number(reg)
            .filter(|&r| r < 0x80)
            .ok_or(CmdError::msg("a register is a number below 0x80"))? as u8;
        let value = match value {
            Some(v) => Some(
                testkernel::num::parse_number(v)
                    .filter(|&v| v <= 0xff)
                    .ok_or(CmdError::msg("a value is a byte"))? as u8,
            ),
            None => None,
        };
        cpu::outb(INDEX, reg);
        let shown = match value {
            Some(v) => {
                cpu::outb(DATA, v);
                v
            }
            None => cpu::inb(DATA),
        };
        serial::hex(u64::from(reg));
        serial::puts("=");
        serial::hex(u64::from(shown));
        serial::puts(if i + 1 == args.len() { "\n" } else { " " });
    }
    Ok(())
}
