//! `vsock ...`: the virtio-vsock device (see `virtio_vsock.rs` and docs/testkernel.md):
//! connections to host ports and from the host to listened ports, seeded data out, data in
//! (CRC-32) and echoed, shutdown and close, reset, and malformed chains and packets (`evil`).

use super::{Args, CmdError, Command};
use crate::hostile;
use crate::serial;
use crate::virtio_vsock::{
    self, ConnState, EvilOutcome, VsockError, EVIL_CASES, SHUT_RCV, SHUT_SEND,
};
use testkernel::crc32::Crc32;
use testkernel::num::{fmt_hex, NUM_BUF};

const USAGE: &str = "usage: vsock info|connect|listen|accept|send|recv|echo|shutdown|close|state|reset|evil ... (see help)";

/// The commands of this group.
pub const COMMANDS: &[Command] = &[Command {
    name: "vsock",
    usage: "vsock info | connect <port> | listen <port> | accept <port> | send <conn> <bytes> <seed> | recv <conn> <bytes> | echo <conn> <bytes> | shutdown <conn> send|rcv|both | close <conn> | state <conn> | reset | evil <case>|list [conn]",
    help: "virtio-vsock streams: connect to the host, accept from it, seeded data out, data in (crc32=), echo, shutdown, close, malformed chains and packets",
    run: vsock,
}];

fn vsock(args: &Args) -> Result<(), CmdError> {
    match args.get(0).ok_or(CmdError::msg(USAGE))? {
        b"info" => info(),
        b"connect" => {
            let port = port(args, 1)?;
            let c = virtio_vsock::connect(port).map_err(error)?;
            print_conn(c)
        }
        b"listen" => virtio_vsock::listen(port(args, 1)?).map_err(error),
        b"accept" => {
            let c = virtio_vsock::accept(port(args, 1)?).map_err(error)?;
            print_conn(c)
        }
        b"send" => {
            if args.len() != 4 {
                return Err(CmdError::msg("usage: vsock send <conn> <bytes> <seed>"));
            }
            let c = conn(args, 1)?;
            let len = args.number(2, "bad byte count")?;
            let seed = args.number(3, "bad seed")?;
            virtio_vsock::send(c, len, seed).map_err(error)?;
            serial::puts("sent=");
            serial::dec(len);
            serial::puts("\n");
            Ok(())
        }
        b"recv" => {
            let c = conn(args, 1)?;
            let len = args.number(2, "usage: vsock recv <conn> <bytes>")?;
            let mut crc = Crc32::new();
            let got = virtio_vsock::recv(c, len, |b| crc = crc.update(b)).map_err(error)?;
            let mut buf = [0; NUM_BUF];
            serial::puts("crc32=");
            serial::write(&fmt_hex(u64::from(crc.value()), 8, &mut buf)[2..]);
            serial::puts(" bytes=");
            serial::dec(got);
            serial::puts("\n");
            Ok(())
        }
        b"echo" => {
            let c = conn(args, 1)?;
            let len = args.number(2, "usage: vsock echo <conn> <bytes>")?;
            let n = virtio_vsock::echo(c, len).map_err(error)?;
            serial::puts("echoed=");
            serial::dec(n);
            serial::puts("\n");
            Ok(())
        }
        b"shutdown" => {
            let c = conn(args, 1)?;
            let flags = match args.get(2) {
                Some(b"send") => SHUT_SEND,
                Some(b"rcv") => SHUT_RCV,
                Some(b"both") => SHUT_SEND | SHUT_RCV,
                _ => return Err(CmdError::msg("usage: vsock shutdown <conn> send|rcv|both")),
            };
            virtio_vsock::shutdown(c, flags).map_err(error)
        }
        b"close" => virtio_vsock::close(conn(args, 1)?).map_err(error),
        b"state" => {
            let c = virtio_vsock::conn(conn(args, 1)?).map_err(error)?;
            serial::puts("state=");
            serial::puts(state_name(c.state));
            serial::puts(" peer_shut=");
            serial::dec(u64::from(c.peer_shut));
            serial::puts(" inbox=");
            serial::dec(c.len as u64);
            serial::puts("\n");
            Ok(())
        }
        b"reset" => virtio_vsock::reset().map_err(error),
        b"evil" => evil(args),
        _ => Err(CmdError::msg(USAGE)),
    }
}

fn port(args: &Args, i: usize) -> Result<u32, CmdError> {
    let p = args.number(i, "bad port")?;
    u32::try_from(p).map_err(|_| CmdError::msg("bad port"))
}

fn conn(args: &Args, i: usize) -> Result<usize, CmdError> {
    let c = args.number(i, "bad connection")?;
    if c >= virtio_vsock::MAX_CONNS as u64 {
        return Err(CmdError::msg("bad connection"));
    }
    Ok(c as usize)
}

fn print_conn(c: usize) -> Result<(), CmdError> {
    let x = virtio_vsock::driver().conns[c];
    serial::puts("conn=");
    serial::dec(c as u64);
    serial::puts(" local=");
    serial::dec(u64::from(x.local_port));
    serial::puts(" peer=");
    serial::dec(u64::from(x.peer_port));
    serial::puts("\n");
    Ok(())
}

fn state_name(s: ConnState) -> &'static str {
    match s {
        ConnState::Free => "free",
        ConnState::Connecting => "connecting",
        ConnState::Established => "established",
        ConnState::Reset => "reset",
        ConnState::Closed => "closed",
    }
}

fn error(e: VsockError) -> CmdError {
    match e {
        VsockError::NoDevice => CmdError::msg("no vsock device"),
        VsockError::NotReady(why) => CmdError::msg(why),
        VsockError::NoConn => CmdError::msg("no such connection"),
        VsockError::TooMany => CmdError::msg("too many"),
        VsockError::Refused => CmdError::msg("refused"),
        VsockError::Reset => CmdError::msg("reset"),
        VsockError::Timeout { done } => CmdError::dec("timeout done=", done),
        VsockError::NeedsReset => CmdError::msg("needs-reset"),
    }
}

fn info() -> Result<(), CmdError> {
    let d = virtio_vsock::driver();
    if !d.present {
        return Err(CmdError::msg("no vsock device"));
    }
    d.poll();
    serial::puts("vsock virtio=");
    serial::dec(d.transport as u64);
    serial::puts(" cid=");
    serial::dec(d.cid);
    serial::puts(" state=");
    serial::puts(match d.state {
        Ok(()) => "ready",
        Err(_) => "failed",
    });
    serial::puts(" features=");
    serial::hex(d.features);
    let open = d
        .conns
        .iter()
        .filter(|c| c.state != ConnState::Free)
        .count();
    serial::puts(" conns=");
    serial::dec(open as u64);
    serial::puts(" rx=");
    serial::dec(d.counters.rx_pkts);
    serial::puts(" tx=");
    serial::dec(d.counters.tx_pkts);
    serial::puts(" resets=");
    serial::dec(d.counters.resets);
    if let Err(why) = d.state {
        serial::puts(" reason=");
        serial::puts(why);
    }
    serial::puts("\n");
    Ok(())
}

fn evil(args: &Args) -> Result<(), CmdError> {
    let case = args
        .get(1)
        .ok_or(CmdError::msg("usage: vsock evil <case>|list [conn]"))?;
    if case == b"list" {
        for (name, what) in hostile::CASES.iter().chain(EVIL_CASES) {
            serial::puts(name);
            serial::puts(": ");
            serial::puts(what);
            serial::puts("\n");
        }
        return Ok(());
    }
    let name = hostile::CASES
        .iter()
        .chain(EVIL_CASES)
        .map(|(n, _)| *n)
        .find(|n| n.as_bytes() == case)
        .ok_or(CmdError::msg("unknown case (vsock evil list)"))?;
    let c = if args.get(2).is_some() {
        conn(args, 2)?
    } else {
        0
    };
    match virtio_vsock::evil(name, c) {
        None => Err(CmdError::msg("unknown case (vsock evil list)")),
        Some(Err(e)) => Err(error(e)),
        Some(Ok(outcome)) => {
            serial::puts("evil ");
            serial::puts(name);
            match outcome {
                EvilOutcome::Used(len) => {
                    serial::puts(" used len=");
                    serial::dec(u64::from(len));
                }
                EvilOutcome::Timeout => serial::puts(" timeout"),
                EvilOutcome::NeedsReset => serial::puts(" needs-reset"),
                EvilOutcome::ConnReset => serial::puts(" conn-reset"),
                EvilOutcome::ConnAlive => serial::puts(" conn-alive"),
            }
            serial::puts("\n");
            Ok(())
        }
    }
}
