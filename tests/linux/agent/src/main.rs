//! The real-Linux suite's agent. It runs inside the nested L1 guest (see tests/linux/README.md)
//! and serves the host over TCP (QEMU's user network forwards a host port to it). Each
//! connection carries one request: a JSON line, then a JSON reply line, and for the streaming
//! requests the raw bytes of a stream until either side closes.
//!
//! | request | reply, then |
//! |---|---|
//! | `{"op":"exec","cmd":C,"timeout":S}` | `{"rc","out","err","timed_out"}`: `sh -c C`, killed after S s |
//! | `{"op":"spawn","argv":[..],"env":{..},"stderr":P}` | `{"pid"}`, then the child's stdin/stdout |
//! | `{"op":"wait","pid":N,"timeout":S}` | `{"exited","rc","signal"}` |
//! | `{"op":"signal","pid":N,"sig":G}` | `{"ok"}` |
//! | `{"op":"connect","unix":P}` or `{"op":"connect","tcp":A}` | `{"ok"}`, then the socket's bytes |
//! | `{"op":"get","path":P}` | `{"size"}`, then the file |
//! | `{"op":"put","path":P,"size":N,"mode":M}` + N bytes | `{"ok"}` |
//!
//! Failures reply `{"error": "..."}`. Nothing here is exposed beyond the QEMU user network of
//! one test run.

mod files;
mod procs;
mod relay;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A request's JSON line may not be longer than this.
const MAX_REQUEST: usize = 1 << 20;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:7000".into());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("sv-linux-agent: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let table: &'static procs::Table = Box::leak(Box::default());
    println!("L1-AGENT-READY {addr}");
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || {
            let _ = conn.set_nodelay(true);
            if let Err(e) = serve(conn, table) {
                eprintln!("sv-linux-agent: {e}");
            }
        });
    }
}

/// Writes one JSON reply line.
fn reply(conn: &mut TcpStream, v: &Value) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    conn.write_all(line.as_bytes())
}

fn serve(conn: TcpStream, table: &'static procs::Table) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = Vec::new();
    (&mut reader)
        .take(MAX_REQUEST as u64)
        .read_until(b'\n', &mut line)?;
    let mut conn = conn;
    let req: Value = match serde_json::from_slice(&line) {
        Ok(v) => v,
        Err(e) => return reply(&mut conn, &json!({"error": format!("bad request: {e}")})),
    };
    let op = req["op"].as_str().unwrap_or("");
    let result = match op {
        "exec" => procs::exec(&req).map(|v| (v, None)),
        "spawn" => procs::spawn(&req, table).map(|(v, s)| (v, Some(Stream::Child(s)))),
        "wait" => procs::wait(&req, table).map(|v| (v, None)),
        "signal" => procs::signal(&req).map(|v| (v, None)),
        "connect" => relay::connect(&req).map(|(v, s)| (v, Some(Stream::Socket(s)))),
        "get" => files::get(&req).map(|(v, f)| (v, Some(Stream::File(f)))),
        "put" => files::put(&req, &mut reader).map(|v| (v, None)),
        _ => Err(format!("unknown op {op:?}")),
    };
    match result {
        Err(e) => reply(&mut conn, &json!({ "error": e })),
        Ok((v, stream)) => {
            reply(&mut conn, &v)?;
            match stream {
                None => Ok(()),
                Some(Stream::File(mut f)) => {
                    std::io::copy(&mut f, &mut conn)?;
                    Ok(())
                }
                // Bytes the host sent right behind its request line are already buffered.
                Some(Stream::Child(c)) => relay::child(reader, conn, c),
                Some(Stream::Socket(s)) => relay::sockets(reader, conn, s),
            }
        }
    }
}

enum Stream {
    Child(procs::ChildIo),
    Socket(relay::Socket),
    File(std::fs::File),
}

/// Seconds from a request field, with a default.
fn secs(req: &Value, key: &str, default: f64) -> Duration {
    Duration::from_secs_f64(req[key].as_f64().unwrap_or(default).clamp(0.0, 86_400.0))
}
