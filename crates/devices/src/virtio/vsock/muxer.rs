//! The userspace device's connections: what guest packets do to them, which packets go to the
//! guest next, and what their host streams are waiting for. It knows nothing of virtqueues
//! (the worker moves packets between them and this), so its rules are tested on their own.
//!
//! The rules that keep a guest from hurting the host or other connections: a packet that
//! breaks the protocol (a wrong CID or type, an unknown operation, a packet for a connection
//! in the wrong state, a write past the credit it was given) resets that connection only (RST);
//! at most [`MAX_CONNECTIONS`] connections exist (handshakes included), each holding at most
//! [`CONN_BUF`] bytes; RSTs answering packets of no connection wait in a bounded queue.

use super::backend::connect;
use super::conn::{pending, Conn, HostRead, Phase};
use super::packet::{op, shutdown, Header, HOST_CID, TYPE_STREAM};
use super::{CLOSE_TIMEOUT, HANDSHAKE_TIMEOUT, MAX_CONNECTIONS, MAX_PAYLOAD};
use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::ops::Bound;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// (host port, guest port).
pub type Key = (u32, u32);

/// Longest `CONNECT <port>` line, newline included.
const MAX_LINE: usize = 32;
/// RSTs for packets of no connection that may wait for receive buffers.
const MAX_RESETS: usize = 256;
/// First host port given to host-initiated connections (as Firecracker does).
pub(super) const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// Protocol violations logged at warning level; later ones go to debug.
const LOUD_VIOLATIONS: u32 = 16;

/// A host program that connected and has not finished its `CONNECT <port>` line.
struct Handshake {
    stream: File,
    line: Vec<u8>,
    since: Instant,
}

/// What one entry of the poll set belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Handshake(usize),
    Conn(Key),
}

pub struct Muxer {
    guest_cid: u64,
    /// Guest connections to host port P go to `<base>_P`.
    base: PathBuf,
    conns: BTreeMap<Key, Conn>,
    handshakes: Vec<Handshake>,
    resets: VecDeque<Header>,
    next_port: u32,
    /// Where the last data packet came from (round robin).
    cursor: Key,
    violations: u32,
}

impl Muxer {
    pub fn new(guest_cid: u64, base: &Path) -> Self {
        Muxer {
            guest_cid,
            base: base.to_path_buf(),
            conns: BTreeMap::new(),
            handshakes: Vec::new(),
            resets: VecDeque::new(),
            next_port: FIRST_LOCAL_PORT,
            cursor: (0, 0),
            violations: 0,
        }
    }

    /// The host port the next host-initiated connection gets (kept by a snapshot, so that a
    /// restored device does not give a new connection the ports of one the guest may still
    /// hold).
    pub fn next_port(&self) -> u32 {
        self.next_port
    }

    pub fn set_next_port(&mut self, port: u32) {
        self.next_port = port.max(FIRST_LOCAL_PORT);
    }

    /// Connections and handshakes.
    pub fn len(&self) -> usize {
        self.conns.len() + self.handshakes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every connection (a device reset or stop): their host streams are closed.
    pub fn reset_all(&mut self) {
        if !self.is_empty() {
            log::info!("vsock: {} connections closed by a device reset", self.len());
        }
        self.conns.clear();
        self.handshakes.clear();
        self.resets.clear();
    }

    /// A host program connected to the device's socket.
    pub fn accept_host(&mut self, fd: OwnedFd) {
        if self.len() >= MAX_CONNECTIONS {
            log::warn!("vsock: {MAX_CONNECTIONS} connections exist; a host client is refused");
            return;
        }
        self.handshakes.push(Handshake {
            stream: File::from(fd),
            line: Vec::new(),
            since: Instant::now(),
        });
    }

    fn port_path(&self, port: u32) -> PathBuf {
        let mut p = self.base.as_os_str().to_owned();
        p.push(format!("_{port}"));
        PathBuf::from(p)
    }

    /// A free host port for a host-initiated connection to guest port `peer`.
    fn local_port(&mut self, peer: u32) -> u32 {
        loop {
            let p = self.next_port;
            self.next_port = self.next_port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            if !self.conns.contains_key(&(p, peer)) {
                return p;
            }
        }
    }

    fn rst_for(&self, h: &Header) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: h.dst_port,
            dst_port: h.src_port,
            type_: TYPE_STREAM,
            op: op::RST,
            ..Header::default()
        }
    }

    /// Answers a packet of no connection with an RST (when the queue has room: the guest
    /// times out otherwise).
    fn reset_reply(&mut self, h: &Header) {
        if h.op == op::RST {
            return;
        }
        if self.resets.len() < MAX_RESETS {
            let r = self.rst_for(h);
            self.resets.push_back(r);
        }
    }

    /// A packet that breaks the protocol: its connection (if any) is reset, nothing else.
    pub fn violation(&mut self, h: &Header, why: &str) {
        self.violations = self.violations.saturating_add(1);
        let msg = format!(
            "vsock: guest packet op {} {}:{} -> {}:{} breaks the protocol ({why}); connection reset",
            h.op, h.src_cid, h.src_port, h.dst_cid, h.dst_port
        );
        if self.violations <= LOUD_VIOLATIONS {
            log::warn!("{msg}");
        } else {
            log::debug!("{msg}");
        }
        self.conns.remove(&(h.dst_port, h.src_port));
        self.reset_reply(h);
    }

    /// One packet from the guest (`payload` is an RW packet's data, empty otherwise).
    pub fn guest_packet(&mut self, h: &Header, payload: &[u8]) {
        if h.src_cid != self.guest_cid {
            return self.violation(h, "source CID is not the guest's");
        }
        if h.dst_cid != HOST_CID {
            return self.violation(h, "destination CID is not the host's");
        }
        if h.type_ != TYPE_STREAM {
            return self.violation(h, "not a stream packet");
        }
        let key = (h.dst_port, h.src_port);
        if h.op == op::REQUEST {
            return self.request(h, key);
        }
        if h.op == op::RST {
            if self.conns.remove(&key).is_some() {
                log::debug!("vsock: guest reset {}:{}", key.0, key.1);
            }
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            return self.reset_reply(h);
        };
        c.peer_credit(h);
        match (h.op, c.phase) {
            (op::RESPONSE, Phase::Requested { .. }) => {
                c.phase = Phase::Established;
                c.reply = format!("OK {}\n", c.local_port).into_bytes();
                c.flush();
            }
            (op::RW, Phase::Established) => {
                if c.guest_shut & shutdown::SEND != 0 {
                    return self.violation(h, "data after the guest's shutdown");
                }
                if payload.len() > c.our_free() {
                    return self.violation(h, "data past the credit given");
                }
                c.push(payload);
                c.flush();
            }
            (op::SHUTDOWN, Phase::Established | Phase::Closing { .. }) => {
                c.guest_shut |= h.flags & shutdown::BOTH;
                if c.guest_shut == shutdown::BOTH {
                    c.phase = Phase::Closing {
                        deadline: Instant::now() + CLOSE_TIMEOUT,
                    };
                }
                c.flush();
                Self::finish_if_done(c);
            }
            (op::CREDIT_UPDATE, Phase::Established | Phase::Closing { .. }) => {}
            (op::CREDIT_REQUEST, Phase::Established | Phase::Closing { .. }) => {
                c.pending |= pending::CREDIT_UPDATE;
            }
            (op::RESPONSE | op::RW | op::SHUTDOWN | op::CREDIT_UPDATE | op::CREDIT_REQUEST, _) => {
                self.violation(h, "not valid in the connection's state")
            }
            _ => self.violation(h, "unknown operation"),
        }
    }

    /// A guest connects to host port `key.0`: to the listener at `<path>_<port>`.
    fn request(&mut self, h: &Header, key: Key) {
        if self.conns.contains_key(&key) {
            return self.violation(h, "a request for an existing connection");
        }
        if self.len() >= MAX_CONNECTIONS {
            log::warn!("vsock: {MAX_CONNECTIONS} connections exist; a guest request is refused");
            return self.reset_reply(h);
        }
        let path = self.port_path(key.0);
        match connect(&path) {
            Ok(fd) => {
                let mut c = Conn::new(fd, key.0, key.1, Phase::Established);
                c.peer_credit(h);
                c.pending |= pending::RESPONSE;
                self.conns.insert(key, c);
                log::debug!(
                    "vsock: guest port {} connected to {}",
                    key.1,
                    path.display()
                );
            }
            Err(e) => {
                log::debug!("vsock: guest connection to {}: {e}", path.display());
                self.reset_reply(h);
            }
        }
    }

    /// A connection the guest shut down both ways: once its bytes reached the host, reset.
    fn finish_if_done(c: &mut Conn) {
        if c.guest_shut == shutdown::BOTH && !c.has_output() {
            c.close_stream();
            c.pending |= pending::RST;
        }
    }

    /// Whether a packet may be waiting for the guest (a read may still find nothing).
    pub fn has_for_guest(&self) -> bool {
        !self.resets.is_empty()
            || self
                .conns
                .values()
                .any(|c| c.pending != 0 || (c.wants_to_send() && c.readable && c.peer_free() > 0))
    }

    /// Keys in round-robin order, starting after the last one served.
    fn keys_from_cursor(&self) -> Vec<Key> {
        let after = self
            .conns
            .range((Bound::Excluded(self.cursor), Bound::Unbounded))
            .map(|(k, _)| *k);
        let before = self.conns.range(..=self.cursor).map(|(k, _)| *k);
        after.chain(before).collect()
    }

    /// The next packet for the guest, its payload (at most `room` bytes) in `buf`; returns the
    /// header and the payload length.
    pub fn next_for_guest(&mut self, room: usize, buf: &mut [u8]) -> Option<(Header, usize)> {
        if let Some(r) = self.resets.pop_front() {
            return Some((r, 0));
        }
        let keys = self.keys_from_cursor();
        let cid = self.guest_cid;
        for key in &keys {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            if c.pending == 0 {
                continue;
            }
            let h = Self::control(c, cid);
            if h.op == op::RST {
                self.conns.remove(key);
            }
            return Some((h, 0));
        }
        let room = room.min(MAX_PAYLOAD).min(buf.len());
        for key in keys {
            let Some(c) = self.conns.get_mut(&key) else {
                continue;
            };
            if !(c.wants_to_send() && c.readable) {
                continue;
            }
            let credit = c.peer_free() as usize;
            if credit == 0 {
                if !c.credit_asked {
                    c.credit_asked = true;
                    c.pending |= pending::CREDIT_REQUEST;
                }
                continue;
            }
            let want = room.min(credit);
            if want == 0 {
                continue;
            }
            match c.read(&mut buf[..want]) {
                HostRead::Data(n) => {
                    c.rx_cnt = c.rx_cnt.wrapping_add(n as u32);
                    let mut h = c.header(cid, op::RW);
                    h.len = n as u32;
                    self.cursor = key;
                    return Some((h, n));
                }
                HostRead::Empty => c.readable = false,
                HostRead::Ended => {
                    c.host_input_ended();
                    Self::closing_if_finished(c);
                }
            }
        }
        // A read may have left a control packet (SHUTDOWN, CREDIT_REQUEST) to send.
        if self.conns.values().any(|c| c.pending != 0) {
            return self.next_for_guest(room, buf);
        }
        None
    }

    /// Both directions of the host stream are finished: wait for the guest's RST.
    fn closing_if_finished(c: &mut Conn) {
        if !c.host_in && !c.host_out && c.phase == Phase::Established {
            c.phase = Phase::Closing {
                deadline: Instant::now() + CLOSE_TIMEOUT,
            };
        }
    }

    /// The most urgent control packet of `c` (which has one).
    fn control(c: &mut Conn, cid: u64) -> Header {
        let bits = [
            pending::RST,
            pending::REQUEST,
            pending::RESPONSE,
            pending::SHUTDOWN,
            pending::CREDIT_UPDATE,
            pending::CREDIT_REQUEST,
        ];
        let bit = bits
            .into_iter()
            .find(|b| c.pending & b != 0)
            .unwrap_or(pending::RST);
        c.pending &= !bit;
        let opcode = match bit {
            pending::REQUEST => op::REQUEST,
            pending::RESPONSE => op::RESPONSE,
            pending::SHUTDOWN => op::SHUTDOWN,
            pending::CREDIT_UPDATE => op::CREDIT_UPDATE,
            pending::CREDIT_REQUEST => op::CREDIT_REQUEST,
            _ => op::RST,
        };
        let mut h = c.header(cid, opcode);
        if opcode == op::SHUTDOWN {
            let mut flags = 0;
            if !c.host_in {
                flags |= shutdown::SEND;
            }
            if !c.host_out {
                flags |= shutdown::RCV;
            }
            c.sent_shut |= flags;
            h.flags = flags;
            Self::closing_if_finished(c);
        }
        h
    }

    /// The descriptors to watch and what for; `deliver` says whether host data could go to
    /// the guest now (it gave receive buffers).
    pub fn poll_set(&self, deliver: bool, fds: &mut Vec<libc::pollfd>, targets: &mut Vec<Target>) {
        for (i, h) in self.handshakes.iter().enumerate() {
            fds.push(libc::pollfd {
                fd: h.stream.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            targets.push(Target::Handshake(i));
        }
        for (key, c) in &self.conns {
            let Some(fd) = c.fd() else { continue };
            let mut events = 0;
            if deliver && c.wants_to_send() && !c.readable && c.peer_free() > 0 {
                events |= libc::POLLIN;
            }
            if c.has_output() {
                events |= libc::POLLOUT;
            }
            if events != 0 || !c.hup {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                targets.push(Target::Conn(*key));
            }
        }
    }

    /// What poll said of `target`. Handshakes go first to last, so a handshake that ends
    /// (and leaves the list) must be handled after those behind it: call in reverse order.
    pub fn host_event(&mut self, target: Target, revents: i16) {
        match target {
            Target::Handshake(i) => self.handshake(i),
            Target::Conn(key) => {
                let Some(c) = self.conns.get_mut(&key) else {
                    return;
                };
                if revents & (libc::POLLIN | libc::POLLHUP) != 0 && c.host_in {
                    c.readable = true;
                }
                if revents & libc::POLLOUT != 0 {
                    c.flush();
                }
                if revents & libc::POLLERR != 0 {
                    c.host_output_ended();
                    c.host_input_ended();
                } else if revents & libc::POLLHUP != 0 {
                    c.hup = true;
                    // After our own SHUT_WR a hang-up only says that the host's side ended
                    // too, which its end of stream tells.
                    if c.host_out && !c.write_shut {
                        c.host_output_ended();
                    }
                }
                Self::closing_if_finished(c);
                Self::finish_if_done(c);
            }
        }
    }

    /// Reads what a host program sent of its `CONNECT <port>\n` line, a byte at a time (what
    /// follows the line is the connection's and stays in the socket).
    fn handshake(&mut self, i: usize) {
        let Some(hs) = self.handshakes.get_mut(i) else {
            return;
        };
        let mut byte = [0u8; 1];
        let done = loop {
            match hs.stream.read(&mut byte) {
                Ok(0) => break Err("closed before CONNECT".to_string()),
                Ok(_) if byte[0] == b'\n' => break parse_connect(&hs.line),
                Ok(_) if hs.line.len() + 1 >= MAX_LINE => {
                    break Err(format!("no newline in {MAX_LINE} bytes"))
                }
                Ok(_) => hs.line.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e.to_string()),
            }
        };
        let hs = self.handshakes.swap_remove(i);
        match done {
            Ok(port) => {
                let local = self.local_port(port);
                let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
                let mut c = Conn::new(
                    OwnedFd::from(hs.stream),
                    local,
                    port,
                    Phase::Requested { deadline },
                );
                c.pending |= pending::REQUEST;
                self.conns.insert((local, port), c);
                log::debug!("vsock: host client connecting to guest port {port} from {local}");
            }
            Err(why) => log::info!("vsock: host client refused: {why}"),
        }
    }

    /// Deadlines: handshakes and requests that took too long, closings the guest did not
    /// finish. Returns the next deadline.
    pub fn tick(&mut self, now: Instant) -> Option<Instant> {
        self.handshakes.retain(|h| {
            let keep = now < h.since + HANDSHAKE_TIMEOUT;
            if !keep {
                log::info!("vsock: host client sent no CONNECT line in time");
            }
            keep
        });
        let mut next: Option<Instant> = self
            .handshakes
            .iter()
            .map(|h| h.since + HANDSHAKE_TIMEOUT)
            .min();
        for c in self.conns.values_mut() {
            match c.phase {
                Phase::Requested { deadline } | Phase::Closing { deadline }
                    if c.pending & pending::RST == 0 =>
                {
                    if now >= deadline {
                        if matches!(c.phase, Phase::Requested { .. }) {
                            log::info!("vsock: guest port {} did not accept in time", c.peer_port);
                        }
                        c.close_stream();
                        c.pending |= pending::RST;
                    } else {
                        next = Some(next.map_or(deadline, |n| n.min(deadline)));
                    }
                }
                _ => {}
            }
        }
        next
    }
}

/// `CONNECT <port>` (an optional `\r` before the newline is allowed).
fn parse_connect(line: &[u8]) -> Result<u32, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| "not text".to_string())?;
    let port = text
        .strip_prefix("CONNECT ")
        .ok_or_else(|| format!("expected CONNECT <port>, got {:?}", text))?;
    port.parse::<u32>()
        .map_err(|_| format!("bad port {:?}", port))
}

/// Time until `deadline`, for poll, rounded up to whole milliseconds.
pub fn timeout_ms(deadline: Option<Instant>, now: Instant) -> libc::c_int {
    match deadline {
        Some(t) => t
            .saturating_duration_since(now)
            .max(Duration::from_millis(1))
            .as_micros()
            .div_ceil(1000)
            .min(60_000) as libc::c_int,
        None => -1,
    }
}

#[cfg(test)]
#[path = "muxer_tests.rs"]
mod tests;
