//! `con ...`: the virtio-console (see `virtio_console.rs` and docs/testkernel.md): state, text
//! and seeded output, input (CRC-32) and echo, a throughput benchmark, reset, and malformed
//! buffers (`evil`).

use super::{
    evil_case, field_dec, field_hex, field_str, find_case, print_cases, Args, CmdError, Command,
};
use crate::virtio_console::{self, EvilOutcome, IoError, State, EVIL_CASES};
use crate::{serial, virtio_mmio};
use testkernel::num::{fmt_hex, NUM_BUF};

const USAGE: &str = "usage: con info|print|write|read|echo|bench|reset|evil ... (see help)";

/// The commands of this group.
pub const COMMANDS: &[Command] = &[Command {
    name: "con",
    usage: "con info | print <words...> | write <bytes> <seed> [chunk] | read <bytes> | echo <bytes> | bench <bytes> [chunk] | reset | evil <case>|list",
    help: "virtio-console (hvc0): state, a line, seeded output, input (crc32=), echo, throughput, reset, malformed buffers",
    run: con,
}];

fn con(args: &Args) -> Result<(), CmdError> {
    let sub = args.get(0).ok_or(CmdError::msg(USAGE))?;
    match sub {
        b"info" => info(),
        b"print" => {
            let mut line = [0u8; 160];
            let mut n = 0;
            for i in 1..args.len() {
                let w = args.get(i).unwrap_or(b"");
                if i > 1 {
                    line[n] = b' ';
                    n += 1;
                }
                line[n..n + w.len()].copy_from_slice(w);
                n += w.len();
            }
            line[n] = b'\n';
            virtio_console::print(&line[..n + 1]).map_err(io_error)
        }
        b"write" => {
            if !(3..=4).contains(&args.len()) {
                return Err(CmdError::msg("usage: con write <bytes> <seed> [chunk]"));
            }
            let len = args.number(1, "bad byte count")?;
            let seed = args.number(2, "bad seed")?;
            let chunk = chunk(args, 3)?;
            virtio_console::write_pattern(len, seed, chunk).map_err(io_error)
        }
        b"read" => {
            let len = args.number(1, "usage: con read <bytes>")?;
            let crc = virtio_console::read(len).map_err(io_error)?;
            let mut buf = [0; NUM_BUF];
            serial::puts("crc32=");
            serial::write(&fmt_hex(u64::from(crc), 8, &mut buf)[2..]);
            field_dec(" bytes=", len);
            serial::puts("\n");
            Ok(())
        }
        b"echo" => {
            let len = args.number(1, "usage: con echo <bytes>")?;
            virtio_console::echo(len).map_err(io_error)
        }
        b"bench" => {
            let len = args.number(1, "usage: con bench <bytes> [chunk]")?;
            let chunk = chunk(args, 2)?;
            let r = virtio_console::bench(len, chunk).map_err(io_error)?;
            field_dec("bytes=", r.bytes);
            field_dec(" ticks=", r.ticks);
            field_dec(" kicks=", r.kicks);
            field_dec(" irqs=", r.interrupts);
            serial::puts("\n");
            Ok(())
        }
        b"reset" => virtio_console::reset().map_err(io_error),
        b"evil" => evil(args),
        _ => Err(CmdError::msg(USAGE)),
    }
}

fn chunk(args: &Args, i: usize) -> Result<u32, CmdError> {
    if args.get(i).is_none() {
        return Ok(virtio_console::TX_SLOT);
    }
    let c = args.number(i, "bad chunk")?;
    if c == 0 || c > u64::from(virtio_console::TX_SLOT) {
        return Err(CmdError::dec(
            "chunk must be 1..",
            u64::from(virtio_console::TX_SLOT),
        ));
    }
    Ok(c as u32)
}

fn io_error(e: IoError) -> CmdError {
    match e {
        IoError::Timeout { done } => CmdError::dec("timeout done=", done),
        IoError::NeedsReset => CmdError::msg("needs-reset"),
        IoError::NotReady(State::NeedsReset) => {
            CmdError::msg("needs-reset (device needs reset: con reset)")
        }
        IoError::NotReady(State::Stale) => CmdError::msg("stale (a transfer timed out: con reset)"),
        IoError::NotReady(State::Failed(why)) => CmdError::msg(why),
        IoError::NotReady(State::Ready) => CmdError::msg("not ready"),
        IoError::NoConsole => CmdError::msg("no console"),
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Ready => "ready",
        State::NeedsReset => "needs-reset",
        State::Stale => "stale",
        State::Failed(_) => "failed",
    }
}

fn info() -> Result<(), CmdError> {
    let c = virtio_console::console().ok_or(CmdError::msg("no console"))?;
    serial::puts("console virtio=");
    serial::dec(c.transport as u64);
    field_dec(" irq=", u64::from(c.irq));
    field_str(" state=", state_name(c.state));
    field_hex(" features=", c.features);
    field_dec(" queue=", u64::from(c.queue_size()));
    field_hex(" status=", u64::from(c.device_status()));
    field_dec(" written=", c.written);
    field_dec(" read=", c.read);
    field_dec(" kicks=", c.kicks);
    field_dec(" used_irqs=", virtio_mmio::used_irqs(c.transport));
    let (used, seen, avail, busy) = c.tx_state();
    field_dec(" tx_used=", u64::from(used));
    field_dec(" tx_seen=", u64::from(seen));
    field_dec(" tx_avail=", u64::from(avail));
    field_hex(" tx_busy=", busy);
    if let State::Failed(why) = c.state {
        field_str(" reason=", why);
    }
    serial::puts("\n");
    Ok(())
}

fn evil(args: &Args) -> Result<(), CmdError> {
    let list = || print_cases("", EVIL_CASES, ": ");
    let Some(case) = evil_case(args, "usage: con evil <case>|list", list)? else {
        return Ok(());
    };
    let name = find_case(EVIL_CASES, case, "unknown case (con evil list)")?;
    match virtio_console::evil(name) {
        None => Err(CmdError::msg("unknown case (con evil list)")),
        Some(Err(e)) => Err(io_error(e)),
        Some(Ok(outcome)) => {
            serial::puts("evil ");
            serial::puts(name);
            match outcome {
                EvilOutcome::Completed { len } => {
                    serial::puts(" completed len=");
                    serial::dec(u64::from(len));
                }
                EvilOutcome::Timeout => serial::puts(" timeout"),
                EvilOutcome::NeedsReset => serial::puts(" needs-reset"),
            }
            serial::puts("\n");
            Ok(())
        }
    }
}
