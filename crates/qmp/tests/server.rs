//! The QMP server over a real unix socket, with a mock machine.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_for, Client, TestServer};
use qmp::{QmpServer, GREETING};
use serde_json::{json, Value};
use vmm_sys_util::tempdir::TempDir;

#[test]
fn greeting_byte_for_byte() {
    let server = TestServer::start();
    let mut s = UnixStream::connect(&server.path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let expected = format!("{GREETING}\r\n");
    assert_eq!(
        expected,
        "{\"QMP\":{\"version\":{\"qemu\":{\"micro\":1,\"minor\":0,\"major\":4},\"package\":\"\"},\"capabilities\":[]}}\r\n"
    );
    let mut got = vec![0u8; expected.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8(got).unwrap(), expected);
}

#[test]
fn negotiation_and_queries() {
    let server = TestServer::start();
    let mut c = Client::connect_greeted(&server.path);
    assert_eq!(
        c.cmd(r#"{"execute":"qmp_capabilities"}"#),
        json!({"return":{}})
    );
    assert_eq!(
        c.cmd(r#"{"execute":"qmp_capabilities","arguments":{"enable":[]},"id":"n"}"#),
        json!({"return":{},"id":"n"})
    );
    assert_eq!(
        c.cmd(r#"{"execute":"query-version"}"#),
        json!({"return":{"qemu":{"micro":1,"minor":0,"major":4},"package":""}})
    );
    let v = c.cmd(r#"{"execute":"query-commands"}"#);
    let names: Vec<&str> = v["return"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for core in ["qmp_capabilities", "query-status", "stop", "cont", "quit"] {
        assert!(names.contains(&core), "{core} not listed");
    }
    let v = c.cmd(r#"{"execute":"nope","id":[1]}"#);
    assert_eq!(v["error"]["class"], "CommandNotFound");
    assert_eq!(v["id"], json!([1]));
}

#[test]
fn stop_event_precedes_return() {
    let server = TestServer::start();
    let mut c = Client::connect_greeted(&server.path);
    // No qmp_capabilities: a person typing into ncat still sees the event.
    c.send(r#"{"execute":"stop","id":1}"#);
    let ev = c.read_json();
    assert_eq!(ev["event"], "STOP");
    assert_eq!(ev["data"], json!({}));
    assert!(ev["timestamp"]["seconds"].as_u64().unwrap() > 1_600_000_000);
    assert!(ev["timestamp"]["microseconds"].as_u64().unwrap() < 1_000_000);
    assert_eq!(c.read_json(), json!({"return":{},"id":1}));
    assert_eq!(
        c.cmd(r#"{"execute":"query-status"}"#),
        json!({"return":{"running":false,"singlestep":false,"status":"paused"}})
    );
    let v = c.cmd(r#"{"execute":"stop"}"#);
    assert_eq!(v["error"]["class"], "GenericError");
    c.send(r#"{"execute":"cont"}"#);
    assert_eq!(c.read_json()["event"], "RESUME");
    assert_eq!(c.read_json(), json!({"return":{}}));
    let v = c.cmd(r#"{"execute":"cont"}"#);
    assert_eq!(v["error"]["class"], "GenericError");
    assert_eq!(server.vm.calls(), vec!["stop", "cont"]);
}

#[test]
fn quit_replies_then_shutdown() {
    let server = TestServer::start();
    let mut c = Client::connect_greeted(&server.path);
    let mut watcher = Client::connect_greeted(&server.path);
    watcher.cmd(r#"{"execute":"qmp_capabilities"}"#);
    assert_eq!(c.cmd(r#"{"execute":"quit"}"#), json!({"return":{}}));
    let ev = c.read_json();
    assert_eq!(ev["event"], "SHUTDOWN");
    assert_eq!(ev["data"], json!({"guest":false,"reason":"host-qmp-quit"}));
    assert_eq!(watcher.read_json()["event"], "SHUTDOWN");
    assert_eq!(server.vm.calls(), vec!["quit"]);
}

#[test]
fn no_events_before_the_first_command() {
    let server = TestServer::start();
    let mut silent = Client::connect_greeted(&server.path);
    let mut actor = Client::connect_greeted(&server.path);
    server.wait_clients(2);
    actor.send(r#"{"execute":"stop"}"#);
    assert_eq!(actor.read_json()["event"], "STOP");
    assert_eq!(actor.read_json(), json!({"return":{}}));
    server.bus.emit("TEST", json!({"n": 1}));
    assert_eq!(actor.read_json()["event"], "TEST");
    assert!(silent.quiet_for(Duration::from_millis(200)));
    // Its first reply is the first thing it gets after the greeting.
    assert_eq!(
        silent.cmd(r#"{"execute":"query-status"}"#)["return"]["status"],
        "paused"
    );
    server.bus.emit("TEST", json!({"n": 2}));
    let ev = silent.read_json();
    assert_eq!(ev["event"], "TEST");
    assert_eq!(ev["data"], json!({"n": 2}));
}

#[test]
fn negotiation_reply_comes_before_any_event() {
    let server = TestServer::start();
    let bus = server.bus.clone();
    let running = Arc::new(AtomicBool::new(true));
    let flood = {
        let running = running.clone();
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                bus.emit("TICK", json!({}));
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    for _ in 0..30 {
        let mut c = Client::connect_greeted(&server.path);
        assert_eq!(
            c.cmd(r#"{"execute":"qmp_capabilities","id":"neg"}"#),
            json!({"return":{},"id":"neg"})
        );
        // Events flow afterwards.
        assert_eq!(c.read_json()["event"], "TICK");
    }
    running.store(false, Ordering::Relaxed);
    flood.join().unwrap();
}

#[test]
fn several_clients_at_once() {
    let server = TestServer::start();
    let mut clients: Vec<Client> = (0..10)
        .map(|_| Client::connect_greeted(&server.path))
        .collect();
    for round in 0..5 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(&format!(
                r#"{{"execute":"query-status","id":{{"client":{i},"round":{round}}}}}"#
            ));
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let v = c.read_json();
            assert_eq!(v["id"], json!({"client": i, "round": round}));
            assert_eq!(v["return"]["status"], "running");
        }
    }
    // Each client gets its own greeting, including late ones.
    let _late = Client::connect_greeted(&server.path);
    server.wait_clients(11);
}

#[test]
fn stalled_and_garbage_clients_do_not_disturb_others() {
    let server = TestServer::start();
    let mut stalled = Client::connect_greeted(&server.path);
    let mut garbage = Client::connect_greeted(&server.path);
    let mut good = Client::connect_greeted(&server.path);

    stalled.send_raw(br#"{"execute":"query-"#);
    garbage.send_raw(b"\x00\xff\xfe garbage \x80\x81\n");
    let v = garbage.read_json();
    assert_eq!(v["error"]["class"], "GenericError");
    assert!(v["error"]["desc"]
        .as_str()
        .unwrap()
        .starts_with("JSON parse error"));
    garbage.send_raw(b"}}}}]]]\n");
    assert_eq!(garbage.read_json()["error"]["class"], "GenericError");

    for i in 0..20 {
        let v = good.cmd(&format!(r#"{{"execute":"query-status","id":{i}}}"#));
        assert_eq!(v["id"], i);
    }
    // Both misbehaving clients are still usable.
    assert_eq!(
        garbage.cmd(r#"{"execute":"query-version"}"#)["return"]["package"],
        ""
    );
    stalled.send_raw(b"status\",\"id\":\"late\"}\r\n");
    let v = stalled.read_json();
    assert_eq!(v["id"], "late");
    assert_eq!(v["return"]["status"], "running");
}

#[test]
fn framing_over_the_socket() {
    let server = TestServer::start();
    let mut c = Client::connect_greeted(&server.path);
    // Several commands in one write, CRLF and LF, blank lines in between.
    c.send_raw(
        b"{\"execute\":\"query-version\",\"id\":1}\r\n\r\n\n{\"execute\":\"query-status\",\"id\":2}\n{\"execute\":\"nope\",\"id\":3}\r\n",
    );
    assert_eq!(c.read_json()["id"], 1);
    assert_eq!(c.read_json()["id"], 2);
    assert_eq!(c.read_json()["id"], 3);
    // One command split into many writes.
    let text = br#"{"execute":"query-status","id":"split"}"#;
    for b in &text[..text.len() - 1] {
        c.send_raw(&[*b]);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(c.quiet_for(Duration::from_millis(50)));
    c.send_raw(b"}\r\n");
    assert_eq!(c.read_json()["id"], "split");
    // Bare objects with no newline at all, as qemu.qmp sends them.
    c.send_raw(br#"{"execute":"qmp_capabilities","arguments":{}}"#);
    assert_eq!(c.read_json(), json!({"return":{}}));
    c.send_raw(br#"{"execute":"query-status","id":"a"}{"execute":"query-version","id":"b"}"#);
    assert_eq!(c.read_json()["id"], "a");
    assert_eq!(c.read_json()["id"], "b");
    // A malformed line is answered at its newline, and the next one works.
    c.send_raw(b"{\"execute\":\n");
    assert_eq!(c.read_json()["error"]["class"], "GenericError");
    assert_eq!(c.cmd(r#"{"execute":"query-status","id":"ok"}"#)["id"], "ok");
    // Non-objects and bad members.
    for line in ["[]", "\"x\"", "1", r#"{"execute":1}"#] {
        assert_eq!(c.cmd(line)["error"]["class"], "GenericError", "{line}");
    }
}

#[test]
fn overlong_line_gets_one_error_and_connection_survives() {
    let server = TestServer::start();
    let mut c = Client::connect_greeted(&server.path);
    let writer = {
        let mut s = c.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..40 {
                s.write_all(&chunk).unwrap();
            }
            s.write_all(b"\n{\"execute\":\"query-status\",\"id\":\"after\"}\n")
                .unwrap();
        })
    };
    let v = c.read_json();
    assert_eq!(v["error"]["class"], "GenericError");
    assert!(v["error"]["desc"]
        .as_str()
        .unwrap()
        .starts_with("JSON parse error"));
    let v = c.read_json();
    assert_eq!(v["id"], "after");
    writer.join().unwrap();
}

#[test]
fn pipelined_commands_without_reading() {
    let server = TestServer::start();
    let mut c = Client::connect_greeted(&server.path);
    let n = 3000;
    let writer = {
        let mut s = c.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut batch = String::new();
            for i in 0..n {
                batch.push_str(&format!(r#"{{"execute":"query-cpus","id":{i}}}"#));
                batch.push('\n');
            }
            s.write_all(batch.as_bytes()).unwrap();
        })
    };
    // Let the output back up before reading anything.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..n {
        assert_eq!(c.read_json()["id"], i);
    }
    writer.join().unwrap();
}

#[test]
fn half_closed_client_gets_its_reply() {
    let server = TestServer::start();
    let mut c = Client::connect_greeted(&server.path);
    // No trailing newline: end of input terminates the last command.
    c.send_raw(br#"{"execute":"query-status","id":"eof"}"#);
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.read_json()["id"], "eof");
    c.expect_eof();
    server.wait_clients(0);
}

#[test]
fn many_clients_connecting_and_disconnecting() {
    let server = TestServer::start();
    for i in 0..50 {
        let mut c = Client::connect(&server.path);
        match i % 5 {
            0 => {}
            1 => {
                assert_eq!(c.read_line(), GREETING);
            }
            2 => c.send_raw(br#"{"execute":"query-st"#),
            3 => c.send(r#"{"execute":"query-cpus"}"#),
            _ => {
                assert_eq!(c.read_line(), GREETING);
                c.cmd(r#"{"execute":"qmp_capabilities"}"#);
                server.bus.emit("TEST", json!({"i": i}));
            }
        }
        drop(c);
    }
    server.wait_clients(0);
    let mut c = Client::connect_greeted(&server.path);
    assert_eq!(
        c.cmd(r#"{"execute":"query-status"}"#)["return"]["running"],
        true
    );
}

#[test]
fn a_client_that_never_reads_does_not_block_emit() {
    let server = TestServer::start();
    let mut sleeper = Client::connect_greeted(&server.path);
    sleeper.cmd(r#"{"execute":"qmp_capabilities"}"#);
    let mut good = Client::connect_greeted(&server.path);
    server.wait_clients(2);

    // `sleeper` never reads again; 5 MiB of events must not block emit.
    let payload = "y".repeat(1024);
    let start = Instant::now();
    for i in 0..5000 {
        server.bus.emit("FLOOD", json!({"i": i, "pad": payload}));
    }
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(5), "emit took {elapsed:?}");
    // The sleeper was disconnected once its buffer overflowed.
    server.wait_clients(1);
    // Everyone else is fine.
    assert_eq!(
        good.cmd(r#"{"execute":"query-status"}"#)["return"]["running"],
        true
    );
    server.bus.emit("AFTER", json!({}));
    assert_eq!(good.read_json()["event"], "AFTER");
    // flush is bounded.
    let start = Instant::now();
    server.bus.flush();
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(sleeper);
}

#[test]
fn flush_is_bounded_with_a_stalled_client() {
    let server = TestServer::start();
    let mut sleeper = Client::connect_greeted(&server.path);
    sleeper.cmd(r#"{"execute":"qmp_capabilities"}"#);
    // Fill the socket buffer but stay under the drop limit.
    let payload = "z".repeat(1024);
    for _ in 0..600 {
        server.bus.emit("FILL", json!({"pad": payload}));
    }
    server.wait_clients(1);
    let start = Instant::now();
    server.bus.flush();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "flush took {took:?}");
    // Not waited for again while it still reads nothing.
    let start = Instant::now();
    for _ in 0..10 {
        server.bus.emit("FILL", json!({}));
        server.bus.flush();
    }
    let took = start.elapsed();
    assert!(took < Duration::from_millis(300), "flushes took {took:?}");
    // The sleeper then reads everything, in order.
    for _ in 0..610 {
        assert_eq!(sleeper.read_json()["event"], "FILL");
    }
}

#[test]
fn existing_path_is_refused() {
    let dir = TempDir::new_with_prefix("/tmp/sv-qmp-").unwrap();
    let path = dir.as_path().join("taken.sock");
    std::fs::write(&path, b"not mine").unwrap();
    let err = QmpServer::bind(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"not mine");

    // A stale socket left by a previous run is refused too.
    let stale = dir.as_path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let err = QmpServer::bind(&stale).unwrap_err();
    assert!(err.to_string().contains("stale.sock"), "{err}");

    // A path in a missing directory names the path as well.
    let missing = dir.as_path().join("no/such/dir.sock");
    let err = QmpServer::bind(&missing).unwrap_err();
    assert!(err.to_string().contains("no/such/dir.sock"), "{err}");
}

#[test]
fn socket_file_lifecycle() {
    let dir = TempDir::new_with_prefix("/tmp/sv-qmp-").unwrap();
    let path = dir.as_path().join("qmp.sock");

    // Accepting (and greeting) before run() is even called.
    let server = QmpServer::bind(&path).unwrap();
    assert_eq!(server.socket_path(), path.as_path());
    let mut early = UnixStream::connect(&path).unwrap();
    early
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    // The explicit cleanup removes the file and is idempotent.
    let guard = server.socket_guard();
    assert_eq!(guard.path(), path.as_path());
    let vm = common::MockVm::new(1);
    let stop = server.stop_handle();
    let t = server.spawn(vm).unwrap();
    let mut greeting = vec![0u8; GREETING.len() + 2];
    early.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting[..GREETING.len()], GREETING.as_bytes());
    guard.cleanup();
    assert!(!path.exists());
    guard.cleanup();
    stop.stop();
    t.join().unwrap();

    // Dropping an unused server removes its socket.
    let server = QmpServer::bind(&path).unwrap();
    assert!(path.exists());
    drop(server);
    assert!(!path.exists());

    // Stopping a running server removes it too, and closes clients.
    let server = QmpServer::bind(&path).unwrap();
    let stop = server.stop_handle();
    let guard = server.socket_guard();
    let t = server.spawn(common::MockVm::new(1)).unwrap();
    let mut c = Client::connect_greeted(&path);
    stop.stop();
    t.join().unwrap();
    assert!(!path.exists());
    c.expect_eof();

    // The guard leaves alone a file that replaced its socket.
    std::fs::write(&path, b"someone else").unwrap();
    guard.cleanup();
    assert!(path.exists());
}

#[test]
fn server_thread_is_named_qmp() {
    let dir = TempDir::new_with_prefix("/tmp/sv-qmp-").unwrap();
    let path = dir.as_path().join("qmp.sock");
    let server = QmpServer::bind(&path).unwrap();
    let stop = server.stop_handle();
    let t = server.spawn(common::MockVm::new(1)).unwrap();
    assert_eq!(t.thread().name(), Some("qmp"));
    stop.stop();
    t.join().unwrap();
}

#[test]
fn events_from_many_threads() {
    let server = TestServer::start();
    let mut c = Client::connect_greeted(&server.path);
    c.cmd(r#"{"execute":"qmp_capabilities"}"#);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let bus = server.bus.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    bus.emit("T", json!({"t": t, "i": i}));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut last = [-1i64; 4];
    for _ in 0..400 {
        let v: Value = c.read_json();
        let t = v["data"]["t"].as_u64().unwrap() as usize;
        let i = v["data"]["i"].as_i64().unwrap();
        assert_eq!(i, last[t] + 1, "events of one thread stay in order");
        last[t] = i;
    }
    wait_for(|| server.bus.client_count() == 1, "one client");
}
