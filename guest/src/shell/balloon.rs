//! `balloon ...`: the virtio-balloon driver (see `virtio_balloon.rs` and docs/testkernel.md):
//! state, following the target, free page reports, reset, and malformed requests (`evil`).

use super::mem::TEST_BASE;
use super::{
    evil_case, field_dec, field_hex, field_str, find_case, print_cases, print_evil_end, Args,
    CmdError, Command,
};
use crate::virtio_balloon::{self, Error, EvilOutcome, State, EVIL_CASES};
use crate::{interrupts, serial, virtio_mmio};
use testkernel::balloon::feature;

const USAGE: &str = "usage: balloon info|auto on|off|sync|report <MiB>|reset|evil <case>|list";
const MIB: u64 = 1 << 20;

/// The commands of this group.
pub const COMMANDS: &[Command] = &[Command {
    name: "balloon",
    usage: "balloon info | auto on|off | sync | report <MiB> | reset | evil <case>|list",
    help: "virtio-balloon: state, follow the target (auto, sync), report free pages from 32 MiB, reset, malformed requests",
    run: balloon,
}];

fn balloon(args: &Args) -> Result<(), CmdError> {
    match args.get(0).ok_or(CmdError::msg(USAGE))? {
        b"info" => {
            info();
            Ok(())
        }
        b"auto" => {
            let on = match args.get(1) {
                Some(b"on") => true,
                Some(b"off") => false,
                _ => return Err(CmdError::msg(USAGE)),
            };
            virtio_balloon::set_auto(on);
            Ok(())
        }
        b"sync" => {
            let r = virtio_balloon::sync().map_err(error)?;
            field_dec("target=", r.target);
            field_dec(" inflated=", r.inflated);
            field_dec(" deflated=", r.deflated);
            field_dec(" pages=", virtio_balloon::info().pages);
            serial::puts("\n");
            Ok(())
        }
        b"report" => {
            let mib = args.number(1, "bad size")?;
            let bytes = mib
                .checked_mul(MIB)
                .filter(|&b| b / 4096 <= virtio_balloon::pool_pages())
                .ok_or(CmdError::msg("size exceeds usable RAM above 32 MiB"))?;
            let chains = virtio_balloon::report(TEST_BASE, bytes).map_err(error)?;
            field_dec("chains=", chains);
            serial::puts("\n");
            Ok(())
        }
        b"reset" => virtio_balloon::reset().map_err(error),
        b"evil" => evil(args),
        _ => Err(CmdError::msg(USAGE)),
    }
}

fn error(e: Error) -> CmdError {
    match e {
        Error::NotReady(State::Absent) => CmdError::msg("no balloon"),
        Error::NotReady(State::NeedsReset) => {
            CmdError::msg("needs-reset (device needs reset: balloon reset)")
        }
        Error::NotReady(State::Stale) => {
            CmdError::msg("stale (a request timed out: balloon reset)")
        }
        Error::NotReady(State::Failed(why)) => CmdError::msg(why),
        Error::NotReady(State::Ready) => CmdError::msg("not with pages in the balloon"),
        Error::Timeout => CmdError::msg("timeout"),
        Error::NeedsReset => CmdError::msg("needs-reset"),
        Error::NoQueue => CmdError::msg("feature not negotiated"),
        Error::TooMany => CmdError::msg("more pages than usable RAM above 32 MiB"),
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Absent => "absent",
        State::Ready => "ready",
        State::NeedsReset => "needs-reset",
        State::Stale => "stale",
        State::Failed(_) => "failed",
    }
}

fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

fn info() {
    let b = virtio_balloon::info();
    serial::puts("balloon state=");
    serial::puts(state_name(b.state));
    if b.state == State::Absent {
        serial::puts("\n");
        return;
    }
    let (target, actual) = virtio_balloon::config();
    field_dec(" virtio=", b.transport as u64);
    field_dec(" irq=", u64::from(b.irq));
    field_hex(" features=", b.features);
    field_str(" stats=", flag(virtio_balloon::has(feature::STATS_VQ)));
    field_str(
        " deflate_on_oom=",
        flag(virtio_balloon::has(feature::DEFLATE_ON_OOM)),
    );
    field_str(" report=", flag(virtio_balloon::reporting()));
    field_dec(" target=", u64::from(target));
    field_dec(" actual=", u64::from(actual));
    field_dec(" pages=", b.pages);
    field_dec(" pool=", virtio_balloon::pool_pages());
    field_str(" auto=", flag(b.auto));
    field_dec(" stats_sent=", b.stats_sent);
    field_dec(" cfg_irqs=", virtio_mmio::config_irqs(b.transport));
    if let State::Failed(why) = b.state {
        field_str(" reason=", why);
    }
    serial::puts("\n");
}

fn evil(args: &Args) -> Result<(), CmdError> {
    let list = || print_cases("", EVIL_CASES, ": ");
    let Some(case) = evil_case(args, "usage: balloon evil <case>|list", list)? else {
        return Ok(());
    };
    let name = find_case(EVIL_CASES, case, "unknown case (balloon evil list)")?;
    let start = interrupts::ticks();
    let outcome = virtio_balloon::evil(name)
        .ok_or(CmdError::msg("unknown case"))?
        .map_err(error)?;
    serial::puts(match outcome {
        EvilOutcome::Completed => "completed",
        EvilOutcome::Timeout => "timeout",
        EvilOutcome::NeedsReset => "needs-reset",
    });
    let status = virtio_balloon::device_status();
    print_evil_end(" ", status, state_name(virtio_balloon::info().state), start);
    Ok(())
}
