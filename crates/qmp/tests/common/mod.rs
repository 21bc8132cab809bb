//! Shared helpers for the socket-level tests: a mock machine, a server on a
//! temporary socket, and a line-oriented client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qmp::{
    CpuInfo, CpuInstanceProperties, EventBus, HotpluggableCpu, QmpError, QmpServer, RunState,
    StatusInfo, StopHandle, VmControl,
};
use serde_json::{json, Value};
use vmm_sys_util::tempdir::TempDir;

/// A machine that records calls; `quit` emits SHUTDOWN like the real one
/// (without exiting).
pub struct MockVm {
    paused: Mutex<bool>,
    calls: Mutex<Vec<String>>,
    bus: Mutex<Option<EventBus>>,
    vcpus: u32,
}

impl MockVm {
    pub fn new(vcpus: u32) -> Arc<Self> {
        Arc::new(MockVm {
            paused: Mutex::new(false),
            calls: Mutex::new(Vec::new()),
            bus: Mutex::new(None),
            vcpus,
        })
    }

    pub fn attach(&self, bus: EventBus) {
        *self.bus.lock().unwrap() = Some(bus);
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, c: &str) {
        self.calls.lock().unwrap().push(c.to_string());
    }

    fn props(i: u32) -> CpuInstanceProperties {
        CpuInstanceProperties {
            core_id: 0,
            socket_id: i,
            thread_id: 0,
        }
    }
}

impl VmControl for MockVm {
    fn query_status(&self) -> StatusInfo {
        StatusInfo::new(if *self.paused.lock().unwrap() {
            RunState::Paused
        } else {
            RunState::Running
        })
    }

    fn stop(&self) -> Result<(), QmpError> {
        self.record("stop");
        *self.paused.lock().unwrap() = true;
        Ok(())
    }

    fn cont(&self) -> Result<(), QmpError> {
        self.record("cont");
        *self.paused.lock().unwrap() = false;
        Ok(())
    }

    fn query_cpus(&self) -> Vec<CpuInfo> {
        (0..self.vcpus)
            .map(|i| CpuInfo::new(i, Self::props(i), false, 8439 + i64::from(i)))
            .collect()
    }

    fn query_hotpluggable_cpus(&self) -> Vec<HotpluggableCpu> {
        (0..self.vcpus)
            .map(|i| HotpluggableCpu::new(i, Self::props(i), true))
            .collect()
    }

    fn netdev_add(&self, spec: qmp::net::NetdevSpec) -> Result<(), QmpError> {
        use std::os::fd::AsRawFd;
        let tap = match &spec.tap {
            qmp::net::NetdevTap::Name(n) => n.clone(),
            qmp::net::NetdevTap::Fd(f) => {
                std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            }
        };
        self.record(&format!(
            "netdev_add {} {tap} vhost={}",
            spec.id, spec.vhost
        ));
        Ok(())
    }

    fn quit(&self) {
        self.record("quit");
        if let Some(bus) = self.bus.lock().unwrap().as_ref() {
            bus.emit(
                "SHUTDOWN",
                json!({"guest": false, "reason": "host-qmp-quit"}),
            );
            bus.flush();
        }
    }
}

/// A server running on its own thread over a socket in a temporary dir.
pub struct TestServer {
    pub path: PathBuf,
    pub vm: Arc<MockVm>,
    pub bus: EventBus,
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
    _dir: TempDir,
}

impl TestServer {
    pub fn start() -> Self {
        let dir = TempDir::new_with_prefix("/tmp/sv-qmp-").unwrap();
        let path = dir.as_path().join("qmp.sock");
        let server = QmpServer::bind(&path).unwrap();
        let bus = server.event_bus();
        let stop = server.stop_handle();
        let vm = MockVm::new(2);
        vm.attach(bus.clone());
        let thread = server.spawn(vm.clone()).unwrap();
        TestServer {
            path,
            vm,
            bus,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.path)
    }

    /// Wait until the server holds exactly `n` clients.
    pub fn wait_clients(&self, n: usize) {
        wait_for(|| self.bus.client_count() == n, &format!("{n} clients"));
    }

    pub fn shutdown(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A QMP client reading CRLF-terminated lines.
pub struct Client {
    pub stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Client { stream, reader }
    }

    /// Connect and consume the greeting.
    pub fn connect_greeted(path: &Path) -> Self {
        let mut c = Self::connect(path);
        assert_eq!(c.read_line(), qmp::GREETING);
        c
    }

    /// One line without its terminator; panics on timeout or EOF.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read_line");
        assert!(n > 0, "unexpected EOF");
        assert!(line.ends_with("\r\n"), "line not CRLF-terminated: {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    pub fn read_json(&mut self) -> Value {
        let line = self.read_line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }

    /// True if nothing arrives within `wait`.
    pub fn quiet_for(&mut self, wait: Duration) -> bool {
        if !self.reader.buffer().is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let got = self.reader.fill_buf().map(|b| b.len());
        self.stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        match got {
            Ok(0) => panic!("unexpected EOF"),
            Ok(_) => false,
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "{e}"
                );
                true
            }
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Send a command line and read the next message.
    pub fn cmd(&mut self, line: &str) -> Value {
        self.send(line);
        self.read_json()
    }

    /// Read until EOF (the server closed the connection).
    pub fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
    }
}
