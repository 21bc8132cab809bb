//! `blk ...`: the virtio-blk disks (see `virtio_blk.rs` and
//! docs/testkernel.md): list, read (CRC-32), write (seeded pattern), flush,
//! id, bench, reset, and malformed requests (`evil`).

use super::{
    evil_case, field_dec, field_hex, field_str, print_cases, print_evil_end, Args, CmdError,
    Command,
};
use crate::virtio_blk::{self, EvilOutcome, IoError, State, EVIL_CASES};
use crate::{interrupts, serial, virtio_mmio};
use testkernel::num::{fmt_hex, NUM_BUF};
use testkernel::virtq::{self, status};

const USAGE: &str = "usage: blk list|read|write|flush|id|bench|reset|evil ... (see help)";

/// The commands of this group.
pub const COMMANDS: &[Command] = &[Command {
    name: "blk",
    usage: "blk list | read <dev> <sector> <count> [segs] | write <dev> <sector> <count> <seed> [segs] | flush <dev> | id <dev> | bench <dev> <requests> <qd> [read|write] | reset <dev> | evil <case>|list [dev]",
    help: "virtio-blk disks: list, read (crc32=), write a seeded pattern, flush, serial, benchmark, reset, malformed requests",
    run: blk,
}];

fn blk(args: &Args) -> Result<(), CmdError> {
    let sub = args.get(0).ok_or(CmdError::msg(USAGE))?;
    match sub {
        b"list" => list(),
        b"read" => read(args),
        b"write" => write(args),
        b"flush" => {
            let dev = device(args, 1)?;
            virtio_blk::flush(dev).map_err(io_error)
        }
        b"id" => {
            let dev = device(args, 1)?;
            let id = virtio_blk::get_id(dev).map_err(io_error)?;
            serial::puts("serial=");
            printable(virtq::id_text(&id));
            serial::puts("\n");
            Ok(())
        }
        b"bench" => bench(args),
        b"reset" => {
            let dev = device(args, 1)?;
            virtio_blk::reset(dev).map_err(io_error)?;
            field_dec("capacity=", virtio_blk::capacity(dev));
            serial::puts("\n");
            Ok(())
        }
        b"evil" => evil(args),
        _ => Err(CmdError::msg(USAGE)),
    }
}

/// Argument `i` as a disk name (`vda`, ...) of an existing disk.
fn device(args: &Args, i: usize) -> Result<usize, CmdError> {
    let name = args
        .get(i)
        .ok_or(CmdError::msg("missing device (vda, vdb, ...)"))?;
    let index = virtq::disk_index(name).ok_or(CmdError::msg("bad device name (vda, vdb, ...)"))?;
    if index >= virtio_blk::count() {
        return Err(CmdError::dec(
            "no such disk; disks=",
            virtio_blk::count() as u64,
        ));
    }
    Ok(index)
}

fn io_error(e: IoError) -> CmdError {
    match e {
        IoError::Status(1) => CmdError::msg("ioerr"),
        IoError::Status(2) => CmdError::msg("unsupp"),
        IoError::Status(0xff) => CmdError::msg("no status written"),
        IoError::Status(s) => CmdError::dec("status=", u64::from(s)),
        IoError::Timeout => CmdError::msg("timeout"),
        IoError::NeedsReset => CmdError::msg("needs-reset"),
        IoError::NotReady(State::NeedsReset) => {
            CmdError::msg("needs-reset (device needs reset: blk reset <dev>)")
        }
        IoError::NotReady(State::Stale) => {
            CmdError::msg("stale (a request timed out: blk reset <dev>)")
        }
        IoError::NotReady(State::Failed(why)) => CmdError::msg(why),
        IoError::NotReady(State::Ready) => CmdError::msg("not ready"),
        IoError::NoDisk => CmdError::msg("no such disk"),
        IoError::TooSmall => CmdError::msg("disk smaller than 4 KiB"),
    }
}

fn printable(bytes: &[u8]) {
    for &b in bytes {
        let c = if (0x21..0x7f).contains(&b) { b } else { b'?' };
        serial::write(&[c]);
    }
}

fn hex8(v: u32) {
    let mut buf = [0; NUM_BUF];
    serial::write(&fmt_hex(u64::from(v), 8, &mut buf)[2..]);
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Ready => "ready",
        State::NeedsReset => "needs-reset",
        State::Stale => "stale",
        State::Failed(_) => "failed",
    }
}

fn list() -> Result<(), CmdError> {
    field_dec("disks=", virtio_blk::count() as u64);
    if virtio_blk::skipped() != 0 {
        field_dec(" skipped=", virtio_blk::skipped() as u64);
    }
    serial::puts("\n");
    for i in 0..virtio_blk::count() {
        let Some(d) = virtio_blk::disk(i) else { break };
        // GET_ID first: it may change the state (timeout, needs reset).
        let id = if d.state == State::Ready {
            virtio_blk::get_id(i).ok()
        } else {
            None
        };
        let d = virtio_blk::disk(i).unwrap_or(d);
        serial::write(&virtq::disk_name(i));
        field_dec(" slot=", i as u64);
        field_dec(" virtio=", d.transport as u64);
        field_dec(" irq=", u64::from(d.irq));
        field_dec(" capacity=", virtio_blk::capacity(i));
        field_dec(" ro=", u64::from(d.read_only()));
        serial::puts(" serial=");
        match id {
            Some(id) => printable(virtq::id_text(&id)),
            None => serial::puts("-"),
        }
        field_str(" state=", state_name(d.state));
        field_dec(" gen=", u64::from(virtio_blk::generation(i)));
        field_dec(" cfg_irqs=", virtio_mmio::config_irqs(d.transport));
        field_dec(" used_irqs=", virtio_mmio::used_irqs(d.transport));
        field_dec(" queue=", u64::from(d.queue_size()));
        field_hex(" features=", d.features);
        if let State::Failed(why) = d.state {
            serial::puts(" reason=");
            printable(why.as_bytes());
        }
        serial::puts("\n");
    }
    Ok(())
}

fn read(args: &Args) -> Result<(), CmdError> {
    if !(4..=5).contains(&args.len()) {
        return Err(CmdError::msg(
            "usage: blk read <dev> <sector> <count> [segs]",
        ));
    }
    let dev = device(args, 1)?;
    let sector = args.number(2, "bad sector")?;
    let count = args.number(3, "bad count")?;
    let segs = if args.len() == 5 {
        args.number(4, "bad segs")?
    } else {
        1
    };
    check_count(count, segs)?;
    let crc = virtio_blk::read(dev, sector, count, segs).map_err(io_error)?;
    serial::puts("crc32=");
    hex8(crc);
    serial::puts("\n");
    Ok(())
}

fn write(args: &Args) -> Result<(), CmdError> {
    if !(5..=6).contains(&args.len()) {
        return Err(CmdError::msg(
            "usage: blk write <dev> <sector> <count> <seed> [segs]",
        ));
    }
    let dev = device(args, 1)?;
    let sector = args.number(2, "bad sector")?;
    let count = args.number(3, "bad count")?;
    let seed = args.number(4, "bad seed")?;
    let segs = if args.len() == 6 {
        args.number(5, "bad segs")?
    } else {
        1
    };
    check_count(count, segs)?;
    virtio_blk::write(dev, sector, count, seed, segs).map_err(io_error)
}

fn check_count(count: u64, segs: u64) -> Result<(), CmdError> {
    if count == 0 || count > virtio_blk::MAX_SECTORS {
        return Err(CmdError::dec("count must be 1..", virtio_blk::MAX_SECTORS));
    }
    if segs == 0 || segs > virtio_blk::MAX_SEGS {
        return Err(CmdError::dec("segs must be 1..", virtio_blk::MAX_SEGS));
    }
    Ok(())
}

fn bench(args: &Args) -> Result<(), CmdError> {
    if !(4..=5).contains(&args.len()) {
        return Err(CmdError::msg(
            "usage: blk bench <dev> <requests> <qd> [read|write]",
        ));
    }
    let dev = device(args, 1)?;
    let requests = args.number(2, "bad request count")?;
    let qd = args.number(3, "bad queue depth")?;
    if qd == 0 || qd > virtio_blk::MAX_QD as u64 {
        return Err(CmdError::dec(
            "queue depth must be 1..",
            virtio_blk::MAX_QD as u64,
        ));
    }
    let write = match args.get(4) {
        None | Some(b"read") => false,
        Some(b"write") => true,
        Some(_) => return Err(CmdError::msg("last argument must be read or write")),
    };
    let r = virtio_blk::bench(dev, requests, qd as usize, write).map_err(io_error)?;
    field_dec("requests=", r.requests);
    field_dec(" ticks=", r.ticks);
    field_dec(" qd=", r.depth as u64);
    field_dec(" irqs=", r.interrupts);
    serial::puts("\n");
    Ok(())
}

fn evil(args: &Args) -> Result<(), CmdError> {
    let list = || print_cases("", EVIL_CASES, " - ");
    let Some(case) = evil_case(args, "usage: blk evil <case>|list [dev]", list)? else {
        return Ok(());
    };
    let dev = if args.len() > 2 {
        device(args, 2)?
    } else {
        device_zero()?
    };
    let Ok(case) = core::str::from_utf8(case) else {
        return Err(CmdError::msg("unknown case (blk evil list)"));
    };
    let ticks = interrupts::ticks();
    let outcome = virtio_blk::evil(dev, case)
        .ok_or(CmdError::msg("unknown case (blk evil list)"))?
        .map_err(io_error)?;
    match outcome {
        EvilOutcome::Completed { status, len } => {
            serial::puts("status=");
            match status {
                Some(s) => serial::dec(u64::from(s)),
                None => serial::puts("none"),
            }
            field_dec(" used_len=", u64::from(len));
        }
        EvilOutcome::Timeout => serial::puts("timeout"),
        EvilOutcome::NeedsReset => serial::puts("needs-reset"),
    }
    let d = virtio_blk::disk(dev).ok_or(CmdError::msg("no such disk"))?;
    print_evil_end(" ", d.device_status(), state_name(d.state), ticks);
    if d.device_status() & status::DEVICE_NEEDS_RESET != 0 && d.state == State::Ready {
        serial::puts("warning: device needs reset\n");
    }
    Ok(())
}

fn device_zero() -> Result<usize, CmdError> {
    if virtio_blk::count() == 0 {
        return Err(CmdError::msg("no disks"));
    }
    Ok(0)
}
