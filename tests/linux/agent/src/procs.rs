//! Commands and long-running processes: `exec` (run and collect), `spawn` (start, with stdin and
//! stdout streamed to the host), `wait` and `signal`.

use crate::secs;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// `exec` keeps at most this much of each output stream.
const OUTPUT_LIMIT: u64 = 64 << 20;

/// Exit statuses of spawned processes, by pid.
#[derive(Default)]
pub struct Table {
    exited: Mutex<HashMap<u32, ExitStatus>>,
    changed: Condvar,
}

/// The streams of a spawned process.
pub struct ChildIo {
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
}

fn status_json(s: &ExitStatus) -> Value {
    json!({"exited": true, "rc": s.code(), "signal": s.signal()})
}

fn collect(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut r).take(OUTPUT_LIMIT).read_to_end(&mut buf);
        // Drain the rest so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Kills the process group a child leads.
fn kill_group(child: &Child) {
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
}

/// `sh -c cmd` with an optional stdin text; output collected, killed (with its process group)
/// after the timeout.
pub fn exec(req: &Value) -> Result<Value, String> {
    let cmd = req["cmd"].as_str().ok_or("exec needs cmd")?;
    let timeout = secs(req, "timeout", 60.0);
    let input = req["stdin"].as_str().map(|s| s.as_bytes().to_vec());
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("sh: {e}"))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
    }
    let out = collect(child.stdout.take().ok_or("no stdout")?);
    let err = collect(child.stderr.take().ok_or("no stderr")?);
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(s) => break s,
            None if Instant::now() >= deadline => {
                timed_out = true;
                kill_group(&child);
                break child.wait().map_err(|e| e.to_string())?;
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    if timed_out {
        // Its children may still hold the pipes: don't wait for them.
        return Ok(json!({"rc": null, "out": "", "err": "", "timed_out": true}));
    }
    Ok(json!({
        "rc": status.code(),
        "signal": status.signal(),
        "out": out.join().unwrap_or_default(),
        "err": err.join().unwrap_or_default(),
        "timed_out": false,
    }))
}

/// Starts `argv` in its own process group with stdin and stdout piped (they become the
/// connection's stream) and stderr to a file; a thread records its exit status.
pub fn spawn(req: &Value, table: &'static Table) -> Result<(Value, ChildIo), String> {
    let argv: Vec<String> = req["argv"]
        .as_array()
        .ok_or("spawn needs argv")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let (prog, args) = argv.split_first().ok_or("empty argv")?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0);
    if let Some(env) = req["env"].as_object() {
        for (k, v) in env {
            cmd.env(k, v.as_str().unwrap_or_default());
        }
    }
    if let Some(dir) = req["cwd"].as_str() {
        cmd.current_dir(dir);
    }
    match req["stderr"].as_str() {
        Some(path) => {
            let f = std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?;
            cmd.stderr(f);
        }
        None => {
            cmd.stderr(Stdio::null());
        }
    }
    let mut child = cmd.spawn().map_err(|e| format!("{prog}: {e}"))?;
    let pid = child.id();
    let io = ChildIo {
        stdin: child.stdin.take().ok_or("no stdin")?,
        stdout: child.stdout.take().ok_or("no stdout")?,
    };
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let mut exited = table.exited.lock().unwrap_or_else(|e| e.into_inner());
            exited.insert(pid, status);
            table.changed.notify_all();
        }
    });
    Ok((json!({ "pid": pid }), io))
}

/// Waits for a spawned process to end.
pub fn wait(req: &Value, table: &Table) -> Result<Value, String> {
    let pid = req["pid"].as_u64().ok_or("wait needs pid")? as u32;
    let deadline = Instant::now() + secs(req, "timeout", 60.0);
    let mut exited = table.exited.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(s) = exited.get(&pid) {
            return Ok(status_json(s));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(json!({"exited": false}));
        }
        exited = table
            .changed
            .wait_timeout(exited, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Sends a signal to a process (or, with `"group": true`, to its process group).
pub fn signal(req: &Value) -> Result<Value, String> {
    let pid = req["pid"].as_i64().ok_or("signal needs pid")?;
    let sig = req["sig"].as_i64().unwrap_or(i64::from(libc::SIGTERM));
    let target = if req["group"].as_bool() == Some(true) {
        -pid
    } else {
        pid
    };
    // SAFETY: kill(2) takes plain integers; no memory is involved.
    let rc = unsafe { libc::kill(target as libc::pid_t, sig as libc::c_int) };
    if rc != 0 {
        return Err(format!(
            "kill {target}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(json!({"ok": true}))
}
