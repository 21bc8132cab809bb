//! Streams between the host's connection and a child process or a socket inside L1.

use crate::procs::ChildIo;
use crate::secs;
use serde_json::{json, Value};
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// A socket inside L1 the host talks to.
pub enum Socket {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Socket {
    fn try_clone(&self) -> std::io::Result<Socket> {
        Ok(match self {
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
        })
    }

    fn shutdown_write(&self) {
        let _ = match self {
            Socket::Unix(s) => s.shutdown(Shutdown::Write),
            Socket::Tcp(s) => s.shutdown(Shutdown::Write),
        };
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Socket::Unix(s) => s.read(buf),
            Socket::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Unix(s) => s.write(buf),
            Socket::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Connects to a Unix or TCP socket in L1, retrying until `timeout` (the VMM may not have
/// created it yet).
pub fn connect(req: &Value) -> Result<(Value, Socket), String> {
    let deadline = Instant::now() + secs(req, "timeout", 0.0);
    loop {
        let r = if let Some(p) = req["unix"].as_str() {
            UnixStream::connect(p).map(Socket::Unix)
        } else if let Some(a) = req["tcp"].as_str() {
            TcpStream::connect(a).map(Socket::Tcp)
        } else {
            return Err("connect needs unix or tcp".into());
        };
        match r {
            Ok(s) => return Ok((json!({"ok": true}), s)),
            Err(e) if Instant::now() >= deadline => return Err(format!("connect: {e}")),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

/// Copies until EOF, then half-closes the destination.
fn pump(mut from: impl Read, mut to: impl Write, done: impl FnOnce(&mut dyn Write)) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = to.flush();
            }
        }
    }
    done(&mut to);
}

/// Host connection <-> child's stdin/stdout. The host closing its side closes the child's
/// stdin; the child closing stdout half-closes the connection.
pub fn child(
    host_in: BufReader<TcpStream>,
    host_out: TcpStream,
    c: ChildIo,
) -> std::io::Result<()> {
    let ChildIo { stdin, stdout } = c;
    let t = std::thread::spawn(move || pump(host_in, stdin, |_| {}));
    pump(stdout, &host_out, |_| {});
    let _ = host_out.shutdown(Shutdown::Write);
    let _ = t.join();
    Ok(())
}

/// Host connection <-> a socket in L1, each direction half-closed at its EOF.
pub fn sockets(
    host_in: BufReader<TcpStream>,
    host_out: TcpStream,
    s: Socket,
) -> std::io::Result<()> {
    let to_sock = s.try_clone()?;
    let t = std::thread::spawn(move || {
        let closer = to_sock.try_clone();
        pump(host_in, to_sock, |_| {
            if let Ok(c) = closer {
                c.shutdown_write();
            }
        })
    });
    pump(s, &host_out, |_| {});
    let _ = host_out.shutdown(Shutdown::Write);
    let _ = t.join();
    Ok(())
}
