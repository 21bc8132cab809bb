//! The console's thread (`console`): it serves the socket from boot to exit (accepting
//! clients, one at a time) and, while the guest's driver runs, both queues. It outlives device
//! resets, so a client may connect before the driver starts and stays connected when the guest
//! resets the device.
//!
//! The device (on vCPU threads) and the thread share [`State`] under one lock: activation puts
//! the queues in, a reset takes them out, and the thread only touches them under the lock, so
//! once a reset returns nothing uses the old queues. The thread never blocks with the lock
//! held (every socket operation is non-blocking).

use super::backend::{Client, ConsoleSocket, Input, GRACE};
use super::buffer::OutputBuffer;
use super::chains::{input_buffers, scatter, Mem, TxCursor};
use super::QUEUE_SIZE;
use crate::bus::lock;
use crate::virtio::device_thread::{self, ThreadHandle, ThreadState};
use crate::virtio::faults::{self, Rejects};
use crate::virtio::{Interrupt, InterruptKind};
use sandbox::private::SocketFile;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

/// Output bytes moved per turn of the loop before it looks at its other work again.
const TX_BUDGET: usize = 1 << 20;
/// Largest read from the client into one receive buffer.
const RX_CHUNK: usize = 16 * 1024;
/// How long to stop accepting after running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The queues of a running driver.
pub(super) struct Active {
    pub mem: Mem,
    pub interrupt: Arc<Interrupt>,
    pub rx: Queue,
    pub tx: Queue,
    pub rx_evt: EventFd,
    pub tx_evt: EventFd,
    /// The transmit chain being copied out, when the client made it wait.
    pub cursor: Option<TxCursor>,
    /// The driver broke a queue: nothing is served until a device reset.
    pub broken: bool,
    pub rejects: Rejects,
}

impl Active {
    fn mark_broken(&mut self, why: &dyn std::fmt::Display) {
        let interrupt = Some(&*self.interrupt);
        if faults::mark_broken(
            &mut self.broken,
            interrupt,
            &"virtio-console",
            "a queue",
            why,
        ) {
            self.cursor = None;
        }
    }

    fn reject(&mut self, queue: &str, why: &dyn std::fmt::Display) {
        self.rejects
            .log(&format_args!("virtio-console: bad {queue} buffer"), why);
    }

    /// Returns chain `head` of `rx` (or of the transmitq) with `len` bytes written.
    fn add_used(&mut self, rx: bool, head: u16, len: u32) -> bool {
        let q = if rx { &mut self.rx } else { &mut self.tx };
        match q.add_used(&*self.mem, head, len) {
            Ok(()) => true,
            Err(e) => {
                self.mark_broken(&e);
                false
            }
        }
    }

    /// Interrupts the guest for used buffers of `rx` (or the transmitq), if it asked to be.
    fn notify(&mut self, rx: bool) {
        let q = if rx { &mut self.rx } else { &mut self.tx };
        match q.needs_notification(&*self.mem) {
            Ok(true) => {
                if let Err(e) = self.interrupt.trigger(InterruptKind::UsedBuffer) {
                    log::error!("virtio-console: cannot interrupt: {e}");
                }
            }
            Ok(false) => {}
            Err(e) => self.mark_broken(&e),
        }
    }

    /// Whether the receiveq has buffers; when it has none, asks the driver to notify when it
    /// adds some.
    fn has_input_buffers(&mut self) -> bool {
        if self.broken {
            return false;
        }
        let avail = |q: &Queue, mem: &Mem| {
            q.avail_idx(&**mem, Ordering::Acquire)
                .map(|i| i.0 != q.next_avail())
        };
        match avail(&self.rx, &self.mem) {
            Ok(true) => return true,
            Ok(false) => {}
            Err(e) => {
                self.mark_broken(&e);
                return false;
            }
        }
        match self.rx.enable_notification(&*self.mem) {
            Ok(more) => more,
            Err(e) => {
                self.mark_broken(&e);
                false
            }
        }
    }
}

/// What the device and the thread share.
pub(super) struct State {
    pub active: Option<Active>,
    pub output: OutputBuffer,
    /// Bytes of the next transmit chain already taken before a snapshot (see persist.rs).
    pub tx_skip: u64,
    /// A snapshot is being taken: the queues are left alone (the socket is still served).
    pub paused: bool,
    pub stop: bool,
}

impl ThreadState for State {
    fn request_stop(&mut self) {
        self.stop = true;
    }
}

pub(super) type Shared = device_thread::Shared<State>;

/// The running thread; dropping it stops the thread and removes the socket file.
pub(super) struct WorkerHandle {
    thread: ThreadHandle<State>,
    file: SocketFile,
}

impl WorkerHandle {
    /// Starts the thread `console` serving `socket`.
    pub fn spawn(shared: Arc<Shared>, socket: ConsoleSocket) -> io::Result<Self> {
        let file = socket.file();
        let worker = Worker {
            shared: shared.clone(),
            socket,
            client: None,
            candidate: None,
            accept_after: None,
            bufs: Vec::with_capacity(usize::from(QUEUE_SIZE)),
            bounce: vec![0; RX_CHUNK].into_boxed_slice(),
        };
        let thread = ThreadHandle::spawn(shared, move || worker.run())?;
        Ok(Self { thread, file })
    }

    pub fn stop(&mut self) {
        self.thread.stop();
        self.file.remove();
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    shared: Arc<Shared>,
    socket: ConsoleSocket,
    /// The connected client.
    client: Option<Client>,
    /// A new client waiting out its grace period.
    candidate: Option<Client>,
    /// Accepting is paused until then (out of file descriptors).
    accept_after: Option<Instant>,
    /// The buffers of the receive chain being filled.
    bufs: Vec<(GuestAddress, u32)>,
    bounce: Box<[u8]>,
}

/// Where moving output stopped.
enum Drained {
    /// The transmitq is empty (or broken); its notifications are on.
    Empty,
    /// The output buffer is full and the client takes no more now.
    Blocked,
    /// The turn's budget ran out with output left.
    Budget,
}

/// Slots of the poll set.
const WAKE: usize = 0;
const LISTENER: usize = 1;
const CLIENT: usize = 2;
const CANDIDATE: usize = 3;
const RX_EVT: usize = 4;
const TX_EVT: usize = 5;

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl Worker {
    fn run(mut self) {
        sandbox::seccomp::apply(sandbox::seccomp::ThreadKind::Console);
        let shared = self.shared.clone();
        let mut more = false;
        loop {
            let mut fds = [pollfd(-1, 0); 6];
            {
                let mut st = lock(&shared.state);
                if st.stop {
                    return;
                }
                self.poll_set(&mut st, &mut fds);
            }
            let timeout = if more { 0 } else { self.timeout_ms() };
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call; the
            // descriptors in it belong to `self` or to the shared state, which outlive it.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("virtio-console: poll failed: {e}");
                    return;
                }
                continue;
            }
            if fds[WAKE].revents != 0 {
                let _ = shared.wake.read();
            }
            if fds[LISTENER].revents != 0 {
                self.accept_all();
            }
            self.check_clients(fds[CLIENT].revents, fds[CANDIDATE].revents);
            let mut st = lock(&shared.state);
            if let Some(a) = st.active.as_mut() {
                // EAGAIN when nothing was signalled.
                let _ = a.rx_evt.read();
                let _ = a.tx_evt.read();
            }
            more = self.serve(&mut st);
            if self.client.as_ref().is_some_and(Client::is_gone) {
                self.client = None;
                log::info!("console: client disconnected");
            }
        }
    }

    /// What to wait for, given the state.
    fn poll_set(&mut self, st: &mut State, fds: &mut [libc::pollfd; 6]) {
        fds[WAKE] = pollfd(self.shared.wake.as_raw_fd(), libc::POLLIN);
        if self.accept_after.is_none_or(|t| Instant::now() >= t) {
            self.accept_after = None;
            fds[LISTENER] = pollfd(self.socket.listener_fd(), libc::POLLIN);
        }
        let input = match st.active.as_mut() {
            Some(a) if !a.broken && !st.paused => {
                fds[RX_EVT] = pollfd(a.rx_evt.as_raw_fd(), libc::POLLIN);
                fds[TX_EVT] = pollfd(a.tx_evt.as_raw_fd(), libc::POLLIN);
                self.client.as_ref().is_some_and(|c| c.input_open) && a.has_input_buffers()
            }
            _ => false,
        };
        if let Some(c) = &self.client {
            let mut events = 0;
            if input {
                events |= libc::POLLIN;
            }
            if c.output_open && !st.output.is_empty() {
                events |= libc::POLLOUT;
            }
            // While the client can still read, watch it for a hang-up even when there is
            // nothing to do; once it cannot, only for its input (a hung-up socket is always
            // ready, and would keep poll from sleeping).
            if events != 0 || c.output_open {
                fds[CLIENT] = pollfd(c.fd(), events);
            }
        }
        if let Some(c) = &self.candidate {
            fds[CANDIDATE] = pollfd(c.fd(), 0);
        }
    }

    fn timeout_ms(&self) -> libc::c_int {
        let now = Instant::now();
        let deadlines = [
            self.candidate.as_ref().map(|c| c.since + GRACE),
            self.accept_after,
        ];
        match deadlines.into_iter().flatten().min() {
            // Round up: waking a little early would only come back here.
            Some(t) => t
                .saturating_duration_since(now)
                .as_micros()
                .div_ceil(1000)
                .min(60_000) as libc::c_int,
            None => -1,
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.socket.accept() {
                Ok(Some(c)) => self.offer(c),
                Ok(None) => return,
                Err(e) => {
                    log::warn!("console: cannot accept a client: {e}");
                    self.accept_after = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// A new connection: connected at once if nobody reads the console, else it waits out
    /// the grace period (a newer one replaces it).
    fn offer(&mut self, c: Client) {
        if self.client.as_ref().is_some_and(|c| c.output_open) {
            if self.candidate.replace(c).is_some() {
                log::debug!("console: a newer client came during the grace period");
            }
        } else {
            self.connect(c);
        }
    }

    fn connect(&mut self, c: Client) {
        if let Some(old) = self.client.replace(c) {
            let buffered = lock(&self.shared.state).output.len();
            log::info!(
                "console: a new client replaced the previous one ({} bytes were written to that one; {buffered} buffered bytes go to the new one)",
                old.sent
            );
        } else {
            log::info!("console: client connected");
        }
    }

    fn check_clients(&mut self, client_events: i16, candidate_events: i16) {
        if let Some(c) = self.client.as_mut() {
            if client_events & libc::POLLERR != 0 {
                c.input_open = false;
                c.output_open = false;
            } else if client_events & libc::POLLHUP != 0 {
                // It cannot read any more; what it sent before may still be waiting.
                c.output_open = false;
            }
        }
        if let Some(c) = &self.candidate {
            if candidate_events & (libc::POLLHUP | libc::POLLERR) != 0 {
                log::debug!("console: a client left within the grace period; nothing changes");
                self.candidate = None;
            } else if c.since.elapsed() >= GRACE
                || !self.client.as_ref().is_some_and(|c| c.output_open)
            {
                if let Some(c) = self.candidate.take() {
                    self.connect(c);
                }
            }
        }
    }

    /// Moves bytes both ways as far as they go now. True if output is left to move at once
    /// (the turn's budget ran out).
    fn serve(&mut self, st: &mut State) -> bool {
        if let Some(c) = self.client.as_mut() {
            let dropped = st.output.take_dropped();
            if dropped > 0 && c.output_open {
                log::info!(
                    "console: {dropped} bytes of output were dropped while no client was connected (the buffer keeps the last {} bytes)",
                    st.output.capacity()
                );
            } else if dropped > 0 {
                st.output.count_dropped(dropped);
            }
        }
        let State {
            active,
            output,
            tx_skip,
            paused,
            ..
        } = st;
        let Some(a) = active.as_mut().filter(|a| !a.broken && !*paused) else {
            self.flush(output);
            return false;
        };
        self.fill_input(a);
        self.flush(output);
        loop {
            let drained = self.drain_output(a, output, tx_skip);
            self.flush(output);
            match drained {
                // The client took enough to go on: no event would come to say so.
                Drained::Blocked if !output.is_full() => continue,
                Drained::Blocked | Drained::Empty => return false,
                Drained::Budget => return true,
            }
        }
    }

    /// Whether a client takes the output now.
    fn connected(&self) -> bool {
        self.client.as_ref().is_some_and(|c| c.output_open)
    }

    /// Sends buffered output to the client until the socket is full.
    fn flush(&mut self, output: &mut OutputBuffer) {
        let Some(c) = self.client.as_mut().filter(|c| c.output_open) else {
            return;
        };
        while !output.is_empty() {
            let n = c.write(output.front());
            if n == 0 {
                return;
            }
            output.consume(n);
        }
    }

    /// Client input into receive buffers, one read per buffer, as long as both last.
    fn fill_input(&mut self, a: &mut Active) {
        let Some(client) = self.client.as_mut().filter(|c| c.input_open) else {
            return;
        };
        let mut used = false;
        'outer: loop {
            if let Err(e) = a.rx.disable_notification(&*a.mem) {
                a.mark_broken(&e);
                return;
            }
            loop {
                let chain = match a.rx.iter(a.mem.clone()) {
                    Ok(mut it) => it.next(),
                    Err(e) => return a.mark_broken(&e),
                };
                let Some(chain) = chain else { break };
                let head = chain.head_index();
                let room = match input_buffers(&chain, usize::from(QUEUE_SIZE), &mut self.bufs) {
                    Ok(room) => room,
                    Err(e) => {
                        a.reject("receiveq", &e);
                        if !a.add_used(true, head, 0) {
                            return;
                        }
                        used = true;
                        continue;
                    }
                };
                let want = usize::try_from(room).unwrap_or(RX_CHUNK).min(RX_CHUNK);
                if want == 0 {
                    if !a.add_used(true, head, 0) {
                        return;
                    }
                    used = true;
                    continue;
                }
                match client.read(&mut self.bounce[..want]) {
                    Input::Data(n) => {
                        if let Err(e) = scatter(&a.mem, &self.bufs, &self.bounce[..n]) {
                            log::error!("virtio-console: {n} input bytes lost: {e}");
                        }
                        if !a.add_used(true, head, n as u32) {
                            return;
                        }
                        used = true;
                    }
                    Input::Empty | Input::Ended => {
                        // The buffer stays the guest's, for later input.
                        a.rx.go_to_previous_position();
                        break 'outer;
                    }
                }
            }
            match a.rx.enable_notification(&*a.mem) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    a.mark_broken(&e);
                    return;
                }
            }
        }
        if used {
            a.notify(true);
        }
    }

    /// Guest output into the output buffer: while a client reads, until the buffer is full
    /// (the guest then waits for the client); while nobody does, all of it, the newest bytes
    /// pushing out the oldest.
    fn drain_output(
        &mut self,
        a: &mut Active,
        output: &mut OutputBuffer,
        skip: &mut u64,
    ) -> Drained {
        let mut budget = TX_BUDGET;
        let mut used = false;
        let more = 'outer: loop {
            if let Err(e) = a.tx.disable_notification(&*a.mem) {
                a.mark_broken(&e);
                break Drained::Empty;
            }
            loop {
                if a.cursor.is_none() {
                    let chain = match a.tx.iter(a.mem.clone()) {
                        Ok(mut it) => it.next(),
                        Err(e) => {
                            a.mark_broken(&e);
                            break 'outer Drained::Empty;
                        }
                    };
                    let Some(chain) = chain else { break };
                    let head = chain.head_index();
                    match TxCursor::new(chain, usize::from(QUEUE_SIZE)) {
                        Ok(mut c) => {
                            // Taken (and kept in the output) before a snapshot.
                            c.skip(std::mem::take(skip));
                            a.cursor = Some(c);
                        }
                        Err(e) => {
                            a.reject("transmitq", &e);
                            if !a.add_used(false, head, 0) {
                                break 'outer Drained::Empty;
                            }
                            used = true;
                            continue;
                        }
                    }
                }
                let Some(c) = a.cursor.as_mut() else { break };
                let copied = if self.connected() {
                    if output.is_full() {
                        self.flush(output);
                        if output.is_full() {
                            // The client is slow: the guest waits for it (its buffers stay
                            // unnotified until the client reads).
                            break 'outer Drained::Blocked;
                        }
                    }
                    let copied = c.copy_into(output.spare());
                    if let Ok(n) = copied {
                        output.commit(n);
                    }
                    copied
                } else {
                    copy_overwriting(c, output)
                };
                match copied {
                    Ok(n) => budget = budget.saturating_sub(n),
                    Err(e) => {
                        let head = c.head();
                        a.cursor = None;
                        a.reject("transmitq", &e);
                        if !a.add_used(false, head, 0) {
                            break 'outer Drained::Empty;
                        }
                        used = true;
                        continue;
                    }
                }
                if c.is_done() {
                    let head = c.head();
                    a.cursor = None;
                    if !a.add_used(false, head, 0) {
                        break 'outer Drained::Empty;
                    }
                    used = true;
                }
                if budget == 0 {
                    break 'outer Drained::Budget;
                }
            }
            match a.tx.enable_notification(&*a.mem) {
                Ok(true) => continue,
                Ok(false) => break Drained::Empty,
                Err(e) => {
                    a.mark_broken(&e);
                    break Drained::Empty;
                }
            }
        };
        if used {
            a.notify(false);
        }
        more
    }
}

/// The rest of a transmit chain into the buffer with nobody reading: only its last buffer's
/// worth is copied (older bytes would be pushed out at once), older buffered bytes make room.
fn copy_overwriting(
    c: &mut TxCursor,
    output: &mut OutputBuffer,
) -> Result<usize, super::chains::ChainError> {
    let cap = output.capacity() as u64;
    if c.remaining() > cap {
        let skipped = c.skip(c.remaining() - cap);
        output.count_dropped(skipped);
    }
    output.make_room(c.remaining() as usize);
    let mut copied = 0;
    while !c.is_done() {
        let n = c.copy_into(output.spare())?;
        if n == 0 {
            break;
        }
        output.commit(n);
        copied += n;
    }
    Ok(copied)
}
