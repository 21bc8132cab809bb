//! The QMP socket server: one thread, one epoll set over the listening
//! socket, every client and an eventfd other threads use to wake it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use crate::dispatch::{Dispatcher, VmControl};
use crate::events::{ClientOut, EventBus};
use crate::net::ClientFds;
use crate::protocol::{error_response, line_too_long_error, parse_line, Frame, Framer, GREETING};

const LISTENER_TOKEN: u64 = 0;
const WAKE_TOKEN: u64 = 1;
const FIRST_CLIENT_TOKEN: u64 = 2;

/// Stop reading a client's input while this much of its output is unsent.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Bytes read from a client per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Reads per client per wakeup, so one busy client cannot starve others.
const READS_PER_WAKEUP: usize = 16;
/// How long to stop accepting after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Most descriptors taken from one message (SCM_RIGHTS); more are closed.
const MAX_FDS_PER_MESSAGE: usize = 8;

/// Reads from `stream` like `read`, also taking the descriptors sent with the bytes
/// (SCM_RIGHTS), close-on-exec. Descriptors beyond what fits are closed by the kernel.
fn recv_with_fds(stream: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    const SPACE: usize = MAX_FDS_PER_MESSAGE * std::mem::size_of::<libc::c_int>();
    // Room for one control message of MAX_FDS_PER_MESSAGE descriptors (CMSG_SPACE), aligned.
    let mut control = [0u64; (SPACE + std::mem::size_of::<libc::cmsghdr>()).div_ceil(8) + 1];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is an empty message header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(SPACE as u32) } as usize;
    // SAFETY: `msg` points at `iov` (into `buf`) and `control`, all valid for the call.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg`'s control area; the CMSG macros walk it within
    // msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` points at a complete header inside the control area.
        let (level, kind, len) =
            unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
        if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is the header's size; the data follows it.
            let header = unsafe { libc::CMSG_LEN(0) } as usize;
            let count = len.saturating_sub(header) / std::mem::size_of::<libc::c_int>();
            // SAFETY: CMSG_DATA points at `count` descriptors inside the control area.
            let data = unsafe { libc::CMSG_DATA(cmsg) } as *const libc::c_int;
            for i in 0..count {
                // SAFETY: in bounds (see above); the descriptor is new and now ours.
                let fd = unsafe { std::ptr::read_unaligned(data.add(i)) };
                // SAFETY: the kernel installed `fd` in this process for us.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // SAFETY: as above; CMSG_NXTHDR returns null after the last header.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok((n as usize, fds))
}

/// Removes the server's socket file. Clone it into the machine's exit path
/// (the process leaves through `std::process::exit`, so destructors do not
/// run there) and call [`cleanup`](Self::cleanup).
#[derive(Clone, Debug)]
pub struct SocketGuard {
    file: sandbox::private::SocketFile,
}

impl SocketGuard {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Remove the socket file if it is still the one this server created.
    /// Idempotent; safe to call from any thread.
    pub fn cleanup(&self) {
        self.file.remove();
    }
}

/// Asks a running server loop to return (closing every client and removing
/// the socket file).
#[derive(Clone, Debug)]
pub struct StopHandle {
    bus: EventBus,
}

impl StopHandle {
    /// Make [`QmpServer::run`] return soon.
    pub fn stop(&self) {
        self.bus.shared.stop.store(true, Ordering::SeqCst);
        self.bus.shared.wake();
    }
}

/// A listening QMP socket. Created before the guest starts; serve it with
/// [`run`](Self::run) on a thread of its own ([`spawn`](Self::spawn)).
#[derive(Debug)]
pub struct QmpServer {
    listener: sandbox::private::PrivateListener,
    guard: SocketGuard,
    bus: EventBus,
}

impl QmpServer {
    /// Create and listen on a unix socket at `path`, mode 0600 (whoever connects drives the
    /// VM). A path that already exists (a stale socket included) is refused, naming the path.
    pub fn bind(path: &Path) -> io::Result<Self> {
        let listener = sandbox::private::PrivateListener::bind(path, "QMP socket")?;
        let guard = SocketGuard {
            file: listener.file(),
        };
        match EventBus::new_for_server() {
            Ok(bus) => Ok(QmpServer {
                listener,
                guard,
                bus,
            }),
            Err(e) => {
                guard.cleanup();
                Err(e)
            }
        }
    }

    /// The bus events are emitted on (clone freely).
    pub fn event_bus(&self) -> EventBus {
        self.bus.clone()
    }

    /// A guard that removes the socket file on the exit path.
    pub fn socket_guard(&self) -> SocketGuard {
        self.guard.clone()
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        self.guard.path()
    }

    /// A handle that makes [`run`](Self::run) return.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            bus: self.bus.clone(),
        }
    }

    /// Serve clients until stopped (or the process exits). Runs on the
    /// calling thread; on return every client is closed and the socket file
    /// removed.
    pub fn run(self, vm: Arc<dyn VmControl>) {
        sandbox::seccomp::apply(sandbox::seccomp::ThreadKind::Qmp);
        match Loop::new(&self, vm) {
            Ok(mut l) => l.run(),
            Err(e) => log::error!("QMP server failed to start: {e}"),
        }
        // `self` drops here: the socket file is removed.
    }

    /// [`run`](Self::run) on a new thread named `qmp`.
    pub fn spawn(self, vm: Arc<dyn VmControl>) -> io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("qmp".into())
            .spawn(move || self.run(vm))
    }
}

impl Drop for QmpServer {
    fn drop(&mut self) {
        self.bus.shared.clients().clear();
        self.guard.cleanup();
    }
}

/// Input side of a client, owned by the server thread.
struct Conn {
    stream: Arc<UnixStream>,
    lines: Framer,
    /// The peer will send nothing more (EOF, error or hang-up).
    read_closed: bool,
    /// The peer hung up entirely: drop after processing what it sent.
    hung_up: bool,
    /// Events currently registered with epoll.
    interest: EventSet,
    /// Descriptors the client sent (SCM_RIGHTS) and named (`getfd`).
    fds: RefCell<ClientFds>,
}

struct Loop<'a> {
    server: &'a QmpServer,
    bus: EventBus,
    vm: Arc<dyn VmControl>,
    dispatcher: Dispatcher,
    epoll: Epoll,
    conns: HashMap<u64, Conn>,
    next_token: u64,
    accept_paused_until: Option<Instant>,
}

impl<'a> Loop<'a> {
    fn new(server: &'a QmpServer, vm: Arc<dyn VmControl>) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            server.listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, LISTENER_TOKEN),
        )?;
        let wake = server
            .bus
            .shared
            .wake
            .as_ref()
            .ok_or_else(|| io::Error::other("event bus has no wake eventfd"))?;
        epoll.ctl(
            ControlOperation::Add,
            wake.as_raw_fd(),
            EpollEvent::new(EventSet::IN, WAKE_TOKEN),
        )?;
        let bus = server.bus.clone();
        Ok(Loop {
            server,
            dispatcher: Dispatcher::new(vm.clone(), bus.clone()),
            bus,
            vm,
            epoll,
            conns: HashMap::new(),
            next_token: FIRST_CLIENT_TOKEN,
            accept_paused_until: None,
        })
    }

    fn stopping(&self) -> bool {
        self.bus.shared.stop.load(Ordering::SeqCst)
    }

    fn run(&mut self) {
        let mut events = vec![EpollEvent::default(); 64];
        while !self.stopping() {
            let timeout = match self.accept_paused_until {
                Some(t) => t
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .clamp(1, 1000) as i32,
                None => -1,
            };
            let n = match self.epoll.wait(timeout, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::error!("QMP server epoll_wait failed: {e}");
                    break;
                }
            };
            self.resume_accepting();
            let mut sweep = false;
            for ev in &events[..n] {
                match ev.data() {
                    LISTENER_TOKEN => self.accept_all(),
                    WAKE_TOKEN => {
                        if let Some(w) = &self.bus.shared.wake {
                            let _ = w.read();
                        }
                        sweep = true;
                    }
                    token => self.client_ready(token, ev.event_set()),
                }
                if self.stopping() {
                    break;
                }
            }
            if sweep {
                let tokens: Vec<u64> = self.conns.keys().copied().collect();
                for token in tokens {
                    self.process(token);
                    self.update(token);
                }
            }
        }
        let tokens: Vec<u64> = self.conns.keys().copied().collect();
        for token in tokens {
            self.remove(token);
        }
    }

    fn resume_accepting(&mut self) {
        if let Some(t) = self.accept_paused_until {
            if Instant::now() >= t {
                self.accept_paused_until = None;
                if let Err(e) = self.epoll.ctl(
                    ControlOperation::Add,
                    self.server.listener.as_raw_fd(),
                    EpollEvent::new(EventSet::IN, LISTENER_TOKEN),
                ) {
                    log::error!("QMP server cannot watch its socket again: {e}");
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.server.listener.accept() {
                Ok(Some(fd)) => self.add_client(UnixStream::from(fd)),
                Ok(None) => return,
                Err(e) => {
                    // Typically EMFILE/ENFILE: the pending connection stays queued, so stop
                    // watching the listener for a while rather than spin.
                    log::warn!("QMP server cannot accept a connection: {e}");
                    let _ = self.epoll.ctl(
                        ControlOperation::Delete,
                        self.server.listener.as_raw_fd(),
                        EpollEvent::default(),
                    );
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn add_client(&mut self, stream: UnixStream) {
        if let Err(e) = stream.set_nonblocking(true) {
            log::warn!("QMP client setup failed: {e}");
            return;
        }
        let token = self.next_token;
        self.next_token += 1;
        let stream = Arc::new(stream);
        let interest = EventSet::IN | EventSet::OUT;
        if let Err(e) = self.epoll.ctl(
            ControlOperation::Add,
            stream.as_raw_fd(),
            EpollEvent::new(interest, token),
        ) {
            log::warn!("QMP client setup failed: {e}");
            return;
        }
        {
            let mut out = ClientOut::new(stream.clone());
            out.queue_line(GREETING);
            out.try_flush();
            self.bus.shared.clients().insert(token, out);
        }
        self.conns.insert(
            token,
            Conn {
                stream,
                lines: Framer::default(),
                read_closed: false,
                hung_up: false,
                interest,
                fds: RefCell::default(),
            },
        );
        log::debug!("QMP client {token} connected");
        self.update(token);
    }

    /// (pending output, dead) of a client.
    fn output_state(&self, token: u64) -> (usize, bool) {
        self.bus
            .shared
            .clients()
            .get(&token)
            .map_or((0, true), |c| (c.pending(), c.dead))
    }

    fn client_ready(&mut self, token: u64, events: EventSet) {
        if !self.conns.contains_key(&token) {
            return;
        }
        if events.contains(EventSet::OUT) {
            if let Some(c) = self.bus.shared.clients().get_mut(&token) {
                c.try_flush();
            }
        }
        if events.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            if let Some(conn) = self.conns.get_mut(&token) {
                conn.hung_up = true;
            }
        }
        if events.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR) {
            self.read_input(token);
        }
        self.process(token);
        self.update(token);
    }

    fn read_input(&mut self, token: u64) {
        let mut buf = vec![0u8; READ_CHUNK];
        for _ in 0..READS_PER_WAKEUP {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if conn.read_closed {
                return;
            }
            let (pending, dead) = self.output_state(token);
            if dead {
                return;
            }
            let conn = self.conns.get_mut(&token).expect("checked above");
            // Back-pressure: let the peer read its replies first. A peer that
            // hung up cannot read anything, so take what it sent regardless.
            if pending > OUTPUT_HIGH_WATER && !conn.hung_up {
                return;
            }
            match recv_with_fds(&conn.stream, &mut buf) {
                Ok((0, fds)) => {
                    drop(fds);
                    conn.read_closed = true;
                    return;
                }
                Ok((n, fds)) => {
                    if !fds.is_empty() {
                        conn.fds.borrow_mut().push_received(fds);
                    }
                    conn.lines.push(&buf[..n]);
                    self.process(token);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock => return,
                    _ => {
                        log::debug!("QMP client {token} read failed: {e}");
                        conn.read_closed = true;
                        conn.hung_up = true;
                        return;
                    }
                },
            }
        }
    }

    /// Handle buffered complete lines, in order, while the client's output
    /// is not backed up.
    fn process(&mut self, token: u64) {
        loop {
            let (pending, dead) = self.output_state(token);
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if dead || (pending > OUTPUT_HIGH_WATER && !conn.hung_up) {
                return;
            }
            let frame = if conn.read_closed {
                conn.lines.finish()
            } else {
                conn.lines.next_frame()
            };
            match frame {
                Some(frame) => self.handle_frame(token, frame),
                None => return,
            }
        }
    }

    fn handle_frame(&mut self, token: u64, frame: Frame) {
        let line = match frame {
            Frame::TooLong => {
                self.reply(token, &error_response(&line_too_long_error(), None), false);
                return;
            }
            Frame::Line(line) => line,
        };
        for parsed in parse_line(&line) {
            let req = match parsed {
                Ok(req) => req,
                Err(e) => {
                    self.reply(token, &error_response(&e.error, e.id.as_ref()), false);
                    continue;
                }
            };
            // Events start flowing once a client has sent a command. For the
            // negotiation command they start only after its reply, so a strict
            // client never sees an event before that reply.
            let negotiation = req.execute == "qmp_capabilities";
            if !negotiation {
                self.enable_events(token);
            }
            let outcome = match self.conns.get(&token) {
                Some(conn) => self.dispatcher.dispatch_with(&req, &conn.fds),
                None => self.dispatcher.dispatch(&req),
            };
            self.reply(token, &outcome.response, negotiation);
            if outcome.quit {
                self.bus.flush();
                self.vm.quit();
            }
        }
    }

    fn enable_events(&self, token: u64) {
        if let Some(c) = self.bus.shared.clients().get_mut(&token) {
            c.events = true;
        }
    }

    fn reply(&self, token: u64, line: &str, then_enable_events: bool) {
        if let Some(c) = self.bus.shared.clients().get_mut(&token) {
            c.queue_line(line);
            if then_enable_events {
                c.events = true;
            }
            c.try_flush();
        }
    }

    /// Drop a finished client, or adjust what epoll watches for it.
    fn update(&mut self, token: u64) {
        let (pending, dead) = self.output_state(token);
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let finished = conn.read_closed && conn.lines.buffered() == 0 && pending == 0;
        if dead || conn.hung_up || finished {
            self.remove(token);
            return;
        }
        let mut interest = EventSet::empty();
        if !conn.read_closed && pending <= OUTPUT_HIGH_WATER {
            interest |= EventSet::IN;
        }
        if pending > 0 {
            interest |= EventSet::OUT;
        }
        if interest != conn.interest {
            match self.epoll.ctl(
                ControlOperation::Modify,
                conn.stream.as_raw_fd(),
                EpollEvent::new(interest, token),
            ) {
                Ok(()) => conn.interest = interest,
                Err(e) => {
                    log::warn!("QMP client {token}: epoll update failed: {e}");
                    self.remove(token);
                }
            }
        }
    }

    fn remove(&mut self, token: u64) {
        if let Some(conn) = self.conns.remove(&token) {
            let _ = self.epoll.ctl(
                ControlOperation::Delete,
                conn.stream.as_raw_fd(),
                EpollEvent::default(),
            );
            log::debug!("QMP client {token} disconnected");
        }
        self.bus.shared.clients().remove(&token);
    }
}
