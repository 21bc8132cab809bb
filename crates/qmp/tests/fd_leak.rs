//! No file descriptor outlives its client or the server. Alone in its own
//! test binary so no other test opens descriptors meanwhile.

mod common;

use std::time::Duration;

use common::{Client, TestServer};
use serde_json::json;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn no_fd_leak() {
    // Warm up anything lazily allocated (e.g. by the test harness).
    drop(TestServer::start());
    let before = open_fds();
    {
        let server = TestServer::start();
        for round in 0..3 {
            let mut clients: Vec<Client> = (0..20)
                .map(|_| Client::connect_greeted(&server.path))
                .collect();
            for (i, c) in clients.iter_mut().enumerate() {
                match i % 4 {
                    0 => {
                        c.cmd(r#"{"execute":"qmp_capabilities"}"#);
                    }
                    1 => c.send_raw(b"{\"execute\":\"query"),
                    2 => c.send_raw(b"\xff\xfe\n"),
                    _ => c.send(r#"{"execute":"stop"}"#),
                }
            }
            server.bus.emit("ROUND", json!({"round": round}));
            drop(clients);
            server.wait_clients(0);
        }
        let during = open_fds();
        // Listener, epoll, eventfd: a handful, not one per client.
        assert!(during <= before + 6, "before {before}, during {during}");
    }
    std::thread::sleep(Duration::from_millis(50));
    let after = open_fds();
    assert_eq!(before, after, "fds before {before}, after {after}");
}
