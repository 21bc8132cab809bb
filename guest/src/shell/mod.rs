//! The serial shell: line editing (echo, CR/LF, backspace), splitting into
//! words, and a table of commands. Every reply ends with a line `OK` or
//! `ERR <reason>`; the prompt is `> `.
//!
//! Commands live in one file per group, each exporting `COMMANDS`; adding a
//! group is one line in [`GROUPS`].

mod balloon;
mod basic;
mod blk;
mod cmos;
mod con;
pub(crate) mod mem;
mod net;
mod power;
mod vsock;

use crate::{cpu, interrupts, serial};
use testkernel::num::parse_number;

/// A shell command.
pub struct Command {
    /// First word of the line.
    pub name: &'static str,
    /// Arguments, for `help`.
    pub usage: &'static str,
    /// One-line description, for `help`.
    pub help: &'static str,
    /// Runs it; prints its own output lines, not the final `OK`/`ERR`.
    pub run: fn(&Args) -> Result<(), CmdError>,
}

/// Every command group.
const GROUPS: &[&[Command]] = &[
    basic::COMMANDS,
    mem::COMMANDS,
    blk::COMMANDS,
    net::COMMANDS,
    balloon::COMMANDS,
    con::COMMANDS,
    vsock::COMMANDS,
    cmos::COMMANDS,
    power::COMMANDS,
];

/// All commands, in `help` order.
pub fn commands() -> impl Iterator<Item = &'static Command> {
    GROUPS.iter().flat_map(|g| g.iter())
}

/// Most words in a line.
pub const MAX_WORDS: usize = 8;

/// The words after the command name.
pub struct Args<'a> {
    words: [&'a [u8]; MAX_WORDS],
    len: usize,
}

impl<'a> Args<'a> {
    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Argument `i`.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        (i < self.len).then(|| self.words[i])
    }

    /// Argument `i` as a number (decimal or 0x hex).
    pub fn number(&self, i: usize, what: &'static str) -> Result<u64, CmdError> {
        self.get(i)
            .and_then(parse_number)
            .ok_or(CmdError::msg(what))
    }
}

/// A value printed after an error message.
#[derive(Clone, Copy)]
pub enum ErrValue {
    /// Printed as `0x...`.
    Hex(u64),
    /// Printed in decimal.
    Dec(u64),
}

/// Why a command failed: printed as `ERR <msg><value>`.
#[derive(Clone, Copy)]
pub struct CmdError {
    /// Message.
    pub msg: &'static str,
    /// Optional number after it.
    pub value: Option<ErrValue>,
}

impl CmdError {
    /// Just a message.
    pub const fn msg(msg: &'static str) -> Self {
        Self { msg, value: None }
    }

    /// A message followed by a hex number.
    pub const fn hex(msg: &'static str, v: u64) -> Self {
        Self {
            msg,
            value: Some(ErrValue::Hex(v)),
        }
    }

    /// A message followed by a decimal number.
    pub const fn dec(msg: &'static str, v: u64) -> Self {
        Self {
            msg,
            value: Some(ErrValue::Dec(v)),
        }
    }
}

/// Prints ` key=` (as `key` spells it) and `v` in decimal: one field of a status line.
pub fn field_dec(key: &str, v: u64) {
    serial::puts(key);
    serial::dec(v);
}

/// Prints `key` and `v` in hex (`0x...`).
pub fn field_hex(key: &str, v: u64) {
    serial::puts(key);
    serial::hex(v);
}

/// Prints `key` and the text `v`.
pub fn field_str(key: &str, v: &str) {
    serial::puts(key);
    serial::puts(v);
}

/// Prints `cases` (name, what it does) one a line: `prefix`, name, `sep`, what.
pub fn print_cases(prefix: &str, cases: &[(&str, &str)], sep: &str) {
    for (name, what) in cases {
        serial::puts(prefix);
        serial::puts(name);
        serial::puts(sep);
        serial::puts(what);
        serial::puts("\n");
    }
}

/// The case an `evil` subcommand names (argument 1; `usage` if there is none), or `None`
/// once `list` has run for `evil list`.
pub fn evil_case<'a>(
    args: &Args<'a>,
    usage: &'static str,
    list: impl FnOnce(),
) -> Result<Option<&'a [u8]>, CmdError> {
    let case = args.get(1).ok_or(CmdError::msg(usage))?;
    if case == b"list" {
        list();
        return Ok(None);
    }
    Ok(Some(case))
}

/// The name in `cases` that `case` spells (`unknown` if none does).
pub fn find_case(
    cases: &[(&'static str, &str)],
    case: &[u8],
    unknown: &'static str,
) -> Result<&'static str, CmdError> {
    cases
        .iter()
        .map(|(n, _)| *n)
        .find(|n| n.as_bytes() == case)
        .ok_or(CmdError::msg(unknown))
}

/// The end of an `evil` line after its outcome: the device's status, the driver's state and
/// the ticks since `start`, the first field after `sep`.
pub fn print_evil_end(sep: &str, device_status: u32, state: &str, start: u64) {
    serial::puts(sep);
    field_hex("device_status=", u64::from(device_status));
    field_str(" state=", state);
    field_dec(" ticks=", interrupts::ticks() - start);
    serial::puts("\n");
}

const LINE_MAX: usize = 128;

/// The line being typed.
struct LineEditor {
    buf: [u8; LINE_MAX],
    len: usize,
    overflow: bool,
    last_cr: bool,
}

/// What a received byte did.
enum Key {
    /// Nothing to do yet.
    Pending,
    /// A line is complete.
    Line,
    /// The line was abandoned (Ctrl-C).
    Cancel,
}

impl LineEditor {
    const fn new() -> Self {
        Self {
            buf: [0; LINE_MAX],
            len: 0,
            overflow: false,
            last_cr: false,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    fn feed(&mut self, b: u8) -> Key {
        let after_cr = self.last_cr;
        self.last_cr = b == b'\r';
        match b {
            b'\r' => {
                serial::puts("\n");
                Key::Line
            }
            // LF right after CR is the second half of a CRLF.
            b'\n' if after_cr => Key::Pending,
            b'\n' => {
                serial::puts("\n");
                Key::Line
            }
            0x08 | 0x7f => {
                if self.len > 0 {
                    self.len -= 1;
                    serial::write(b"\x08 \x08");
                }
                Key::Pending
            }
            0x03 => {
                serial::puts("^C\n");
                Key::Cancel
            }
            0x20..=0x7e => {
                if self.len < LINE_MAX {
                    self.buf[self.len] = b;
                    self.len += 1;
                    serial::write(&[b]);
                } else {
                    self.overflow = true;
                }
                Key::Pending
            }
            // Other control keys are echoed in caret notation (^A for 0x01) and not kept,
            // so a console user (and a test) sees what arrived.
            0x00..=0x1f => {
                serial::write(&[b'^', b + 0x40]);
                Key::Pending
            }
            _ => Key::Pending,
        }
    }
}

fn prompt() {
    serial::puts("> ");
}

fn reply(result: Result<(), CmdError>) {
    match result {
        Ok(()) => serial::puts("OK\n"),
        Err(e) => {
            serial::puts("ERR ");
            serial::puts(e.msg);
            match e.value {
                Some(ErrValue::Hex(v)) => serial::hex(v),
                Some(ErrValue::Dec(v)) => serial::dec(v),
                None => {}
            }
            serial::puts("\n");
        }
    }
}

/// Splits `line` into words and runs the command; `None` for a blank line.
fn execute(line: &[u8]) -> Option<Result<(), CmdError>> {
    let mut words = line
        .split(|&c| c == b' ' || c == b'\t')
        .filter(|w| !w.is_empty());
    let name = words.next()?;
    let mut args = Args {
        words: [&[]; MAX_WORDS],
        len: 0,
    };
    for w in words {
        if args.len == MAX_WORDS {
            return Some(Err(CmdError::msg("too many arguments")));
        }
        args.words[args.len] = w;
        args.len += 1;
    }
    Some(match commands().find(|c| c.name.as_bytes() == name) {
        Some(c) => (c.run)(&args),
        None => Err(CmdError::msg("unknown command (try help)")),
    })
}

/// Prints the prompt and serves commands forever. Idles with `sti; hlt`
/// between received bytes.
pub fn run() -> ! {
    let mut ed = LineEditor::new();
    prompt();
    loop {
        // Between commands: the balloon follows its target, answers statistics requests.
        crate::virtio_balloon::poll();
        cpu::cli();
        let Some(b) = serial::read_byte() else {
            cpu::sti_hlt();
            continue;
        };
        cpu::sti();
        match ed.feed(b) {
            Key::Pending => continue,
            Key::Cancel => {}
            Key::Line => {
                let result = if ed.overflow {
                    Some(Err(CmdError::dec("line longer than ", LINE_MAX as u64)))
                } else {
                    execute(&ed.buf[..ed.len])
                };
                if let Some(r) = result {
                    reply(r);
                }
            }
        }
        ed.clear();
        prompt();
    }
}
