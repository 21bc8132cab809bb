//! `net ...`: the virtio-net NICs (see `virtio_net.rs` and docs/testkernel.md): list, send and
//! receive test frames, benchmark, reset, and malformed chains (`evil`).

use super::{
    evil_case, field_dec, field_hex, field_str, print_cases, print_evil_end, Args, CmdError,
    Command,
};
use crate::hostile;
use crate::virtio_net::{self, NetError, State, EVIL_NET_CASES};
use crate::vq::Wait;
use crate::{interrupts, serial, virtio_mmio};

const USAGE: &str = "usage: net list|send|recv|bench|reset|evil ... (see help)";

/// The commands of this group.
pub const COMMANDS: &[Command] = &[Command {
    name: "net",
    usage: "net list | send <dev> <count> <len> <seed> | recv <dev> <count> <ticks> [seed] | bench tx <dev> <count> <len> | bench rx <dev> <count> <ticks> | reset <dev> | evil <case>|list [dev]",
    help: "virtio-net NICs: list, test frames out and in (checked), benchmark, reset, malformed chains",
    run: net,
}];

fn net(args: &Args) -> Result<(), CmdError> {
    match args.get(0).ok_or(CmdError::msg(USAGE))? {
        b"list" => list(),
        b"send" => send(args),
        b"recv" => recv(args),
        b"bench" => bench(args),
        b"reset" => {
            let dev = device(args, 1)?;
            virtio_net::reset(dev).map_err(net_error)?;
            field_str("link=", link(dev));
            serial::puts("\n");
            Ok(())
        }
        b"evil" => evil(args),
        _ => Err(CmdError::msg(USAGE)),
    }
}

/// `eth<i>` as a NIC index.
fn device(args: &Args, i: usize) -> Result<usize, CmdError> {
    let name = args
        .get(i)
        .ok_or(CmdError::msg("missing device (eth0, eth1)"))?;
    let index = match name {
        [b'e', b't', b'h', d @ b'0'..=b'9'] => usize::from(d - b'0'),
        _ => return Err(CmdError::msg("bad device name (eth0, eth1)")),
    };
    if index >= virtio_net::count() {
        return Err(CmdError::dec(
            "no such NIC; nics=",
            virtio_net::count() as u64,
        ));
    }
    Ok(index)
}

fn net_error(e: NetError) -> CmdError {
    match e {
        NetError::NoNic => CmdError::msg("no such NIC"),
        NetError::Timeout => CmdError::msg("timeout"),
        NetError::NeedsReset => CmdError::msg("needs-reset"),
        NetError::BadLength => CmdError::msg("frame length must be 60..1514"),
        NetError::NotReady(State::NeedsReset) => {
            CmdError::msg("needs-reset (device needs reset: net reset <dev>)")
        }
        NetError::NotReady(State::Stale) => {
            CmdError::msg("stale (a transmit timed out: net reset <dev>)")
        }
        NetError::NotReady(State::Failed(why)) => CmdError::msg(why),
        NetError::NotReady(State::Ready) => CmdError::msg("not ready"),
    }
}

fn link(index: usize) -> &'static str {
    if virtio_net::link_up(index) {
        "up"
    } else {
        "down"
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

fn mac(m: &[u8; 6]) {
    for (i, b) in m.iter().enumerate() {
        if i > 0 {
            serial::puts(":");
        }
        let hex = b"0123456789abcdef";
        serial::write(&[hex[usize::from(b >> 4)], hex[usize::from(b & 15)]]);
    }
}

fn list() -> Result<(), CmdError> {
    field_dec("nics=", virtio_net::count() as u64);
    serial::puts("\n");
    for i in 0..virtio_net::count() {
        let Some(n) = virtio_net::nic(i) else { break };
        serial::puts("eth");
        serial::dec(i as u64);
        field_dec(" virtio=", n.transport as u64);
        field_dec(" irq=", u64::from(n.irq));
        serial::puts(" mac=");
        mac(&n.mac);
        field_str(" link=", link(i));
        field_str(" state=", state_name(n.state));
        field_dec(" gen=", u64::from(virtio_net::generation(i)));
        field_dec(" cfg_irqs=", virtio_mmio::config_irqs(n.transport));
        field_dec(" used_irqs=", virtio_mmio::used_irqs(n.transport));
        field_dec(" rx_frames=", n.counters.rx_frames);
        field_dec(" tx_frames=", n.counters.tx_frames);
        field_dec(" queue=", u64::from(virtio_net::QSIZE));
        field_hex(" features=", n.features);
        if let State::Failed(why) = n.state {
            field_str(" reason=", why);
        }
        serial::puts("\n");
    }
    Ok(())
}

fn frame_len(args: &Args, i: usize) -> Result<usize, CmdError> {
    let len = args.number(i, "bad length")?;
    if !(60..=1514).contains(&len) {
        return Err(CmdError::msg("frame length must be 60..1514"));
    }
    Ok(len as usize)
}

fn send(args: &Args) -> Result<(), CmdError> {
    if args.len() != 5 {
        return Err(CmdError::msg("usage: net send <dev> <count> <len> <seed>"));
    }
    let dev = device(args, 1)?;
    let count = args.number(2, "bad count")?;
    let len = frame_len(args, 3)?;
    let seed = args.number(4, "bad seed")?;
    let sent = virtio_net::send(dev, count, len, seed as u8).map_err(net_error)?;
    field_dec("sent=", sent);
    serial::puts("\n");
    Ok(())
}

fn print_received(r: &virtio_net::Received) {
    field_dec("frames=", r.frames);
    field_dec(" bytes=", r.bytes);
    field_dec(" bad=", r.bad);
    field_dec(" other=", r.other);
    field_dec(" lost=", r.lost);
    field_dec(" merged=", r.merged);
    serial::puts(" first=");
    match r.first {
        Some(f) => serial::dec(u64::from(f)),
        None => serial::puts("-"),
    }
    field_dec(" last=", u64::from(r.last));
    field_dec(" ticks=", r.ticks);
    serial::puts("\n");
}

fn recv(args: &Args) -> Result<(), CmdError> {
    if !(4..=5).contains(&args.len()) {
        return Err(CmdError::msg(
            "usage: net recv <dev> <count> <ticks> [seed]",
        ));
    }
    let dev = device(args, 1)?;
    let count = args.number(2, "bad count")?;
    let ticks = args.number(3, "bad ticks")?;
    let seed = match args.get(4) {
        Some(_) => Some(args.number(4, "bad seed")? as u8),
        None => None,
    };
    let r = virtio_net::recv(dev, count, ticks, seed).map_err(net_error)?;
    print_received(&r);
    Ok(())
}

fn bench(args: &Args) -> Result<(), CmdError> {
    let usage = "usage: net bench tx <dev> <count> <len> | net bench rx <dev> <count> <ticks>";
    if args.len() != 5 {
        return Err(CmdError::msg(usage));
    }
    let dev = device(args, 2)?;
    let count = args.number(3, "bad count")?;
    match args.get(1) {
        Some(b"tx") => {
            let len = frame_len(args, 4)?;
            let irqs = virtio_mmio::used_irqs(virtio_net::nic(dev).map_or(0, |n| n.transport));
            let ticks = virtio_net::bench_tx(dev, count, len).map_err(net_error)?;
            let n = virtio_net::nic(dev).ok_or(CmdError::msg("no such NIC"))?;
            field_dec("frames=", count);
            field_dec(" ticks=", ticks);
            field_dec(" irqs=", virtio_mmio::used_irqs(n.transport) - irqs);
            serial::puts("\n");
            Ok(())
        }
        Some(b"rx") => {
            let ticks = args.number(4, "bad ticks")?;
            let r = virtio_net::recv(dev, count, ticks, None).map_err(net_error)?;
            print_received(&r);
            Ok(())
        }
        _ => Err(CmdError::msg(usage)),
    }
}

fn evil(args: &Args) -> Result<(), CmdError> {
    let list = || {
        for q in ["tx-", "rx-"] {
            print_cases(q, hostile::CASES, " - ");
        }
        print_cases("", EVIL_NET_CASES, " - ");
    };
    let Some(case) = evil_case(args, "usage: net evil <case>|list [dev]", list)? else {
        return Ok(());
    };
    let dev = if args.len() > 2 {
        device(args, 2)?
    } else {
        device_zero()?
    };
    let Ok(case) = core::str::from_utf8(case) else {
        return Err(CmdError::msg("unknown case (net evil list)"));
    };
    let ticks = interrupts::ticks();
    let outcome = virtio_net::evil(dev, case)
        .ok_or(CmdError::msg("unknown case (net evil list)"))?
        .map_err(net_error)?;
    let mut sep = "";
    if let Some(chain) = outcome.chain {
        serial::puts("chain=");
        match chain {
            Wait::Used(_, len) => {
                serial::puts("used len=");
                serial::dec(u64::from(len));
            }
            Wait::NeedsReset => serial::puts("needs-reset"),
            Wait::Timeout => serial::puts("timeout"),
        }
        sep = " ";
    }
    if let Some(f) = outcome.frame {
        serial::puts(sep);
        serial::puts(if f { "frame=ok" } else { "frame=none" });
        sep = " ";
    }
    if outcome.chain.is_none() && outcome.frame.is_none() {
        serial::puts("sent=ok");
        sep = " ";
    }
    let n = virtio_net::nic(dev).ok_or(CmdError::msg("no such NIC"))?;
    print_evil_end(sep, n.device_status(), state_name(n.state), ticks);
    Ok(())
}

fn device_zero() -> Result<usize, CmdError> {
    if virtio_net::count() == 0 {
        return Err(CmdError::msg("no NICs"));
    }
    Ok(0)
}
