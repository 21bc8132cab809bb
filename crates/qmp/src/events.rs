//! Event delivery and the per-client output buffers shared between the
//! server thread and any thread that emits events.
//!
//! Every byte written to a client (greeting, replies, events) goes through
//! that client's bounded output buffer in a registry under one mutex, so
//! the order a client sees is the order things were queued (an event emitted
//! by a command handler precedes that command's reply). Writes are
//! non-blocking (`MSG_DONTWAIT`); what the socket does not take stays queued
//! and the server thread, woken through an eventfd, flushes it when the
//! socket becomes writable. A client whose buffer would exceed
//! [`OUTPUT_LIMIT`] because of events is dropped instead of stalling anyone.

use std::collections::HashMap;
use std::io;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::protocol::{event_message, Timestamp, LINE_END};

/// Most bytes of undelivered events a client may accumulate before it is
/// disconnected.
pub const OUTPUT_LIMIT: usize = 1 << 20;

/// Default bound on [`EventBus::flush`].
pub const FLUSH_TIMEOUT: Duration = Duration::from_millis(500);

/// Output side of one client connection.
#[derive(Debug)]
pub(crate) struct ClientOut {
    stream: Arc<UnixStream>,
    buf: Vec<u8>,
    sent: usize,
    /// The client has sent a command and may receive events.
    pub(crate) events: bool,
    /// Write failed or the buffer overflowed: the server drops the client.
    pub(crate) dead: bool,
    /// A bounded flush timed out on this client and it has not read
    /// anything since: later flushes do not wait for it again.
    stalled: bool,
}

impl ClientOut {
    pub(crate) fn new(stream: Arc<UnixStream>) -> Self {
        ClientOut {
            stream,
            buf: Vec::new(),
            sent: 0,
            events: false,
            dead: false,
            stalled: false,
        }
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Queue a reply or greeting line (never refused: the server stops
    /// reading from a client whose output backs up, which bounds these).
    pub(crate) fn queue_line(&mut self, line: &str) {
        if self.dead {
            return;
        }
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.extend_from_slice(LINE_END.as_bytes());
    }

    /// Queue an event line; a client over its limit is marked dead instead.
    fn queue_event(&mut self, line: &str) {
        if self.dead {
            return;
        }
        if self.pending() + line.len() > OUTPUT_LIMIT {
            log::warn!("QMP client does not read its events; disconnecting it");
            self.dead = true;
            self.buf = Vec::new();
            self.sent = 0;
            return;
        }
        self.queue_line(line);
    }

    /// Write as much as the socket takes without blocking.
    pub(crate) fn try_flush(&mut self) {
        while !self.dead && self.pending() > 0 {
            let data = &self.buf[self.sent..];
            // SAFETY: the fd is owned by `self.stream`, which outlives the
            // call; the pointer and length describe the initialised slice
            // `data`. MSG_NOSIGNAL turns a closed peer into EPIPE instead of
            // SIGPIPE, MSG_DONTWAIT keeps the call from blocking.
            let n = unsafe {
                libc::send(
                    self.stream.as_raw_fd(),
                    data.as_ptr().cast(),
                    data.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n >= 0 {
                self.sent += n as usize;
                self.stalled = false;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => break,
                _ => {
                    log::debug!("QMP client write failed: {err}");
                    self.dead = true;
                    self.buf = Vec::new();
                    self.sent = 0;
                }
            }
        }
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
            if self.buf.capacity() > 64 * 1024 {
                self.buf.shrink_to(64 * 1024);
            }
        } else if self.sent >= 64 * 1024 {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// Block (in `poll`) until everything is written, the client fails, or
    /// `deadline` passes.
    fn flush_until(&mut self, deadline: Instant) {
        loop {
            self.try_flush();
            if self.dead || self.pending() == 0 || self.stalled {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.stalled = true;
                return;
            }
            let mut pfd = libc::pollfd {
                fd: self.stream.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: `pfd` is a valid pollfd for the duration of the call
            // and the count passed is 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
    }
}

/// State shared by the server thread and every [`EventBus`] clone.
#[derive(Debug)]
pub(crate) struct Shared {
    clients: Mutex<HashMap<u64, ClientOut>>,
    subscribers: Mutex<Vec<mpsc::Sender<String>>>,
    /// Wakes the server loop (pending output to arm, dead clients to reap,
    /// or a stop request). `None` for a bus with no server.
    pub(crate) wake: Option<EventFd>,
    pub(crate) stop: AtomicBool,
}

impl Shared {
    pub(crate) fn new(wake: Option<EventFd>) -> Self {
        Shared {
            clients: Mutex::new(HashMap::new()),
            subscribers: Mutex::new(Vec::new()),
            wake,
            stop: AtomicBool::new(false),
        }
    }

    /// Lock the client registry (a poisoned lock is still usable: the data
    /// are plain buffers).
    pub(crate) fn clients(&self) -> MutexGuard<'_, HashMap<u64, ClientOut>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn wake(&self) {
        if let Some(wake) = &self.wake {
            // EAGAIN means the counter is saturated: the loop is woken anyway.
            let _ = wake.write(1);
        }
    }
}

/// Emits QMP events to every connected client that has sent a command.
///
/// Cheap to clone; usable from any thread. Never blocks on a slow client.
#[derive(Clone, Debug)]
pub struct EventBus {
    pub(crate) shared: Arc<Shared>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// A bus with no server attached: events go only to
    /// [`subscribers`](Self::subscribe). Useful in tests.
    pub fn new() -> Self {
        EventBus {
            shared: Arc::new(Shared::new(None)),
        }
    }

    pub(crate) fn with_wake(wake: EventFd) -> Self {
        EventBus {
            shared: Arc::new(Shared::new(Some(wake))),
        }
    }

    pub(crate) fn new_for_server() -> io::Result<Self> {
        Ok(Self::with_wake(EventFd::new(EFD_NONBLOCK)?))
    }

    /// Send `{"event":NAME,"data":DATA,"timestamp":{..}}` (wall clock) to
    /// every client that may receive events. A `null` `data` is sent as `{}`.
    pub fn emit(&self, name: &str, data: Value) {
        let line = event_message(name, &data, Timestamp::now());
        log::debug!("QMP event: {line}");
        let mut wake = false;
        {
            let mut clients = self.shared.clients();
            for client in clients.values_mut() {
                if !client.events || client.dead {
                    continue;
                }
                client.queue_event(&line);
                client.try_flush();
                wake |= client.dead || client.pending() > 0;
            }
        }
        {
            let mut subs = self
                .shared
                .subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            subs.retain(|tx| tx.send(line.clone()).is_ok());
        }
        if wake {
            self.shared.wake();
        }
    }

    /// Push queued output to every client, waiting at most [`FLUSH_TIMEOUT`]
    /// in all. Meant for the exit path (after emitting `SHUTDOWN`). A client
    /// that made a flush time out is not waited for again until it reads, so
    /// calling this after every event costs a stalled client's wait once.
    pub fn flush(&self) {
        self.flush_timeout(FLUSH_TIMEOUT);
    }

    /// [`flush`](Self::flush) with an explicit bound.
    pub fn flush_timeout(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut clients = self.shared.clients();
        for client in clients.values_mut() {
            client.flush_until(deadline);
        }
    }

    /// Receive a copy of every event line emitted from now on (without the
    /// line terminator). The channel is unbounded: keep reading it or drop it.
    pub fn subscribe(&self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel();
        self.shared
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }

    /// Number of connected clients (diagnostics and tests).
    pub fn client_count(&self) -> usize {
        self.shared.clients().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn detached_bus_feeds_subscribers() {
        let bus = EventBus::new();
        let rx = bus.subscribe();
        bus.clone().emit("STOP", serde_json::json!({}));
        let line = rx.recv().unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "STOP");
        assert_eq!(v["data"], serde_json::json!({}));
        assert!(v["timestamp"]["seconds"].as_u64().unwrap() > 0);
        drop(rx);
        bus.emit("RESUME", Value::Null);
        assert_eq!(bus.shared.subscribers.lock().unwrap().len(), 0);
        bus.flush();
    }

    #[test]
    fn events_only_to_enabled_clients_and_overflow_drops() {
        let bus = EventBus::new();
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, _b_peer) = UnixStream::pair().unwrap();
        {
            let mut c = bus.shared.clients();
            let mut out = ClientOut::new(Arc::new(a));
            out.events = true;
            c.insert(1, out);
            c.insert(2, ClientOut::new(Arc::new(b)));
        }
        bus.emit("X", Value::Null);
        let mut buf = [0u8; 256];
        let n = a_peer.read(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .starts_with("{\"event\":\"X\""));
        assert_eq!(bus.shared.clients()[&2].pending(), 0);
        // Nobody reads client 1 any more: it is dropped once over the limit,
        // and emit never blocks.
        let big = Value::String("x".repeat(4096));
        for _ in 0..(OUTPUT_LIMIT / 4096 + 600) {
            bus.emit("FLOOD", big.clone());
        }
        assert!(bus.shared.clients()[&1].dead);
        bus.flush_timeout(Duration::from_millis(10));
    }
}
