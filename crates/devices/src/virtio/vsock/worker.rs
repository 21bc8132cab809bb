//! The device's thread (`vsock`). With the userspace backend it serves the Unix socket from
//! boot to exit (host programs may connect before the guest's driver runs; they wait for the
//! guest to accept) and, while the driver runs, the three queues: guest packets from the tx
//! queue into the connections ([`Muxer`]), their packets and host data into the rx queue. With
//! vhost-vsock it hands the rx and tx rings to the host kernel when the driver starts and takes
//! them back at a reset, watching the kernel's error eventfds meanwhile. Either way it keeps
//! the event queue, where a restored device reports a transport reset.
//!
//! As in the console, the device (on vCPU threads) and the thread share [`State`] under one
//! lock; the thread touches the queues only under it and never blocks holding it (every
//! socket is non-blocking). Each activation has a new `generation`: a thread that sees one
//! forgets every connection of the previous driver.

use super::backend::VsockSocket;
use super::muxer::{timeout_ms, Muxer, Target};
use super::packet::{Header, EVENT_TRANSPORT_RESET, HDR_LEN};
use super::vhost::VhostVsock;
use super::{MAX_PAYLOAD, QUEUE_SIZE};
use crate::bus::lock;
use crate::virtio::console::chains::{input_buffers, scatter, Mem, TxCursor};
use crate::virtio::device_thread::{self, ThreadHandle, ThreadState};
use crate::virtio::faults::{self, Rejects};
use crate::virtio::vhost::Vring;
use crate::virtio::{Interrupt, InterruptKind};
use sandbox::private::SocketFile;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Queue indices.
pub const RX: usize = 0;
pub const TX: usize = 1;
pub const EVT: usize = 2;
/// Most descriptors in one chain.
const MAX_DESCS: usize = QUEUE_SIZE as usize;
/// Guest packets taken per turn before the thread looks at its other work.
const TX_BUDGET: usize = 256;
/// How long the device waits for the guest to handle a transport reset (it re-posts the event
/// buffer when it has reset its sockets) before it serves connections again: a connection
/// accepted before the guest handled the reset would be reset with the old ones.
const RESET_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// How often the interrupt for the transport reset is raised again meanwhile: a restore sends
/// the event while the machine is being built, and the vCPUs' restored interrupt controllers
/// may not have it.
const RESET_NUDGE: std::time::Duration = std::time::Duration::from_millis(100);

/// The queues of a running driver.
pub(super) struct Active {
    pub mem: Mem,
    pub interrupt: Arc<Interrupt>,
    pub queues: [Queue; 3],
    pub evts: [EventFd; 3],
    pub generation: u64,
    /// The features the driver accepted.
    pub acked: u64,
    /// The driver broke a queue: nothing is served until a device reset.
    pub broken: bool,
    pub rejects: Rejects,
}

impl Active {
    fn mark_broken(&mut self, why: &dyn std::fmt::Display) {
        let interrupt = Some(&*self.interrupt);
        faults::mark_broken(&mut self.broken, interrupt, &"virtio-vsock", "a queue", why);
    }

    fn reject(&mut self, queue: &str, why: &dyn std::fmt::Display) {
        self.rejects
            .log(&format_args!("virtio-vsock: bad {queue} buffer"), why);
    }

    fn add_used(&mut self, q: usize, head: u16, len: u32) -> bool {
        match self.queues[q].add_used(&*self.mem, head, len) {
            Ok(()) => true,
            Err(e) => {
                self.mark_broken(&e);
                false
            }
        }
    }

    fn notify(&mut self, q: usize) {
        match self.queues[q].needs_notification(&*self.mem) {
            Ok(true) => {
                if let Err(e) = self.interrupt.trigger(InterruptKind::UsedBuffer) {
                    log::error!("virtio-vsock: cannot interrupt: {e}");
                }
            }
            Ok(false) => {}
            Err(e) => self.mark_broken(&e),
        }
    }

    /// Whether queue `q` has buffers; when it has none, asks the driver to notify when it
    /// adds some.
    fn has_buffers(&mut self, q: usize) -> bool {
        if self.broken {
            return false;
        }
        let queue = &self.queues[q];
        match queue.avail_idx(&*self.mem, Ordering::Acquire) {
            Ok(i) if i.0 != queue.next_avail() => return true,
            Ok(_) => {}
            Err(e) => {
                self.mark_broken(&e);
                return false;
            }
        }
        match self.queues[q].enable_notification(&*self.mem) {
            Ok(more) => more,
            Err(e) => {
                self.mark_broken(&e);
                false
            }
        }
    }

    fn pop(&mut self, q: usize) -> Option<super::super::console::chains::Chain> {
        match self.queues[q].iter(self.mem.clone()) {
            Ok(mut it) => it.next(),
            Err(e) => {
                self.mark_broken(&e);
                None
            }
        }
    }
}

/// What the device and the thread share.
pub(super) struct State {
    pub active: Option<Active>,
    pub generation: u64,
    /// A transport reset waits for an event buffer (set by a restore).
    pub reset_event: bool,
    /// A snapshot is being taken: the queues are left alone.
    pub paused: bool,
    pub stop: bool,
    /// Connections open now (userspace backend), for the log and tests.
    pub connections: usize,
    /// The host port of the next host-initiated connection (userspace backend).
    pub next_port: u32,
    /// A restored value of `next_port` for the thread to take.
    pub restore_port: Option<u32>,
}

impl ThreadState for State {
    fn request_stop(&mut self) {
        self.stop = true;
    }
}

pub(super) type Shared = device_thread::Shared<State>;

/// The host side a thread serves.
pub enum Backend {
    Unix(VsockSocket),
    Vhost(VhostVsock),
}

/// The running thread; dropping it stops the thread (and removes the socket file).
pub(super) struct WorkerHandle {
    thread: ThreadHandle<State>,
    file: Option<SocketFile>,
}

impl WorkerHandle {
    pub fn spawn(shared: Arc<Shared>, backend: Backend, guest_cid: u64) -> io::Result<Self> {
        let (file, mode) = match backend {
            Backend::Unix(socket) => {
                let muxer = Muxer::new(guest_cid, socket.path());
                (Some(socket.file()), Mode::Unix { socket, muxer })
            }
            Backend::Vhost(dev) => (
                None,
                Mode::Vhost {
                    dev,
                    errs: [EventFd::new(EFD_NONBLOCK)?, EventFd::new(EFD_NONBLOCK)?],
                    running: false,
                },
            ),
        };
        let worker = Worker {
            shared: shared.clone(),
            mode,
            generation: 0,
            reset_wait: None,
            bufs: Vec::with_capacity(MAX_DESCS),
            bounce: vec![0; HDR_LEN + MAX_PAYLOAD].into_boxed_slice(),
        };
        let thread = ThreadHandle::spawn(shared, move || worker.run())?;
        Ok(Self { thread, file })
    }

    pub fn stop(&mut self) {
        self.thread.stop();
        if let Some(f) = &self.file {
            f.remove();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

enum Mode {
    Unix {
        socket: VsockSocket,
        muxer: Muxer,
    },
    Vhost {
        dev: VhostVsock,
        errs: [EventFd; 2],
        running: bool,
    },
}

struct Worker {
    shared: Arc<Shared>,
    mode: Mode,
    /// The activation whose connections the muxer holds.
    generation: u64,
    /// A transport reset went to the guest: the event queue's driver index then, and until
    /// when to wait for it to move.
    reset_wait: Option<(u16, Instant)>,
    bufs: Vec<(GuestAddress, u32)>,
    bounce: Box<[u8]>,
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Fixed slots of the poll set; the connections follow.
const WAKE: usize = 0;
const LISTENER: usize = 1;
const RX_EVT: usize = 2;
const TX_EVT: usize = 3;
const EVT_EVT: usize = 4;
const ERR_RX: usize = 5;
const ERR_TX: usize = 6;
const FIXED: usize = 7;

impl Worker {
    fn run(mut self) {
        sandbox::seccomp::apply(sandbox::seccomp::ThreadKind::Vsock);
        let shared = self.shared.clone();
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut targets: Vec<Target> = Vec::new();
        let mut more = false;
        loop {
            fds.clear();
            targets.clear();
            fds.resize(FIXED, pollfd(-1, 0));
            let deadline;
            {
                let mut st = lock(&shared.state);
                if st.stop {
                    self.stop_vhost(&mut st);
                    return;
                }
                if let (Some(p), Mode::Unix { muxer, .. }) =
                    (st.restore_port.take(), &mut self.mode)
                {
                    muxer.set_next_port(p);
                }
                self.follow_generation(&mut st);
                deadline = self.poll_set(&mut st, &mut fds, &mut targets);
            }
            let timeout = if more {
                0
            } else {
                timeout_ms(deadline, Instant::now())
            };
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call; the
            // descriptors in it belong to `self` or to the shared state, which outlive it.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("virtio-vsock: poll failed: {e}");
                    return;
                }
                continue;
            }
            if fds[WAKE].revents != 0 {
                let _ = shared.wake.read();
            }
            let mut st = lock(&shared.state);
            if let Some(a) = st.active.as_mut() {
                // EAGAIN when nothing was signalled (the kernel holds rx and tx with vhost).
                for (i, e) in a.evts.iter().enumerate() {
                    if fds[RX_EVT + i].fd >= 0 {
                        let _ = e.read();
                    }
                }
            }
            if let Mode::Vhost { errs, .. } = &self.mode {
                for (i, e) in errs.iter().enumerate() {
                    if fds[ERR_RX + i].revents != 0 {
                        let _ = e.read();
                        if let Some(a) = st.active.as_mut() {
                            a.mark_broken(&format!("the host kernel (vhost) cannot use queue {i}"));
                        }
                    }
                }
            }
            if let Mode::Unix { socket, muxer } = &mut self.mode {
                if fds[LISTENER].revents != 0 {
                    accept_all(socket, muxer);
                }
                for i in (0..targets.len()).rev() {
                    let rev = fds[FIXED + i].revents;
                    if rev != 0 {
                        muxer.host_event(targets[i], rev);
                    }
                }
            }
            more = self.serve(&mut st);
            if let Mode::Unix { muxer, .. } = &mut self.mode {
                muxer.tick(Instant::now());
                st.connections = muxer.len();
                st.next_port = muxer.next_port();
            }
        }
    }

    /// A new activation (or a reset): the previous driver's connections go, and with vhost
    /// the kernel gets the new rings.
    fn follow_generation(&mut self, st: &mut State) {
        let current = st.active.as_ref().map(|a| a.generation);
        if current == Some(self.generation) {
            return;
        }
        self.stop_vhost(st);
        if let Mode::Unix { muxer, .. } = &mut self.mode {
            muxer.reset_all();
            st.connections = 0;
        }
        match current {
            Some(g) => {
                self.generation = g;
                self.start_vhost(st);
            }
            None => self.generation = 0,
        }
    }

    fn start_vhost(&mut self, st: &mut State) {
        let Mode::Vhost { dev, errs, running } = &mut self.mode else {
            return;
        };
        let Some(a) = st.active.as_mut() else { return };
        let call = a.interrupt.irqfd();
        let vrings = [
            Vring {
                index: RX,
                queue: &a.queues[RX],
                kick: &a.evts[RX],
                call,
                err: &errs[RX],
            },
            Vring {
                index: TX,
                queue: &a.queues[TX],
                kick: &a.evts[TX],
                call,
                err: &errs[TX],
            },
        ];
        let features = a.acked & crate::virtio::vhost::RING_FEATURES;
        if let Err(e) = dev.dev.start(&a.mem, features, &vrings) {
            a.mark_broken(&format!("cannot hand the rings to vhost-vsock: {e}"));
            return;
        }
        if let Err(e) = dev.set_running(true) {
            let _ = dev.dev.stop(2);
            a.mark_broken(&format!("VHOST_VSOCK_SET_RUNNING: {e}"));
            return;
        }
        a.interrupt.set_kernel_data_path(true);
        *running = true;
        log::info!(
            "virtio-vsock: vhost-vsock serves the rings (rx at {}, tx at {})",
            a.queues[RX].next_avail(),
            a.queues[TX].next_avail()
        );
    }

    fn stop_vhost(&mut self, st: &mut State) {
        let Mode::Vhost { dev, running, .. } = &mut self.mode else {
            return;
        };
        if !std::mem::take(running) {
            return;
        }
        if let Err(e) = dev.set_running(false) {
            log::error!("virtio-vsock: VHOST_VSOCK_SET_RUNNING 0: {e}");
        }
        if let Err(e) = dev.dev.stop(2) {
            log::error!("virtio-vsock: taking the rings back from vhost-vsock: {e}");
        }
        if let Some(a) = st.active.as_ref() {
            a.interrupt.set_kernel_data_path(false);
        }
    }

    /// What to wait for; returns the next deadline.
    fn poll_set(
        &mut self,
        st: &mut State,
        fds: &mut Vec<libc::pollfd>,
        targets: &mut Vec<Target>,
    ) -> Option<Instant> {
        fds[WAKE] = pollfd(self.shared.wake.as_raw_fd(), libc::POLLIN);
        let paused = st.paused;
        let reset_event = st.reset_event;
        let serving = st.active.as_mut().filter(|a| !a.broken && !paused);
        if let (Some(a), Some((_, until))) = (serving, self.reset_wait) {
            // Waiting for the guest to take in a transport reset: its event queue only.
            fds[EVT_EVT] = pollfd(a.evts[EVT].as_raw_fd(), libc::POLLIN);
            if let Mode::Unix { socket, .. } = &self.mode {
                fds[LISTENER] = pollfd(socket.listener_fd(), libc::POLLIN);
            }
            return Some(until.min(Instant::now() + RESET_NUDGE));
        }
        let serving = st.active.as_mut().filter(|a| !a.broken && !paused);
        match &mut self.mode {
            Mode::Unix { socket, muxer } => {
                fds[LISTENER] = pollfd(socket.listener_fd(), libc::POLLIN);
                let mut deliver = false;
                if let Some(a) = serving {
                    fds[TX_EVT] = pollfd(a.evts[TX].as_raw_fd(), libc::POLLIN);
                    deliver = a.has_buffers(RX);
                    if !deliver {
                        // Out of receive buffers: wait for the driver to add some.
                        fds[RX_EVT] = pollfd(a.evts[RX].as_raw_fd(), libc::POLLIN);
                    }
                    if reset_event && !a.has_buffers(EVT) {
                        fds[EVT_EVT] = pollfd(a.evts[EVT].as_raw_fd(), libc::POLLIN);
                    }
                }
                muxer.poll_set(deliver, fds, targets);
                muxer.tick(Instant::now())
            }
            Mode::Vhost { errs, running, .. } => {
                if let Some(a) = serving {
                    if reset_event && !a.has_buffers(EVT) {
                        fds[EVT_EVT] = pollfd(a.evts[EVT].as_raw_fd(), libc::POLLIN);
                    }
                    if *running {
                        fds[ERR_RX] = pollfd(errs[RX].as_raw_fd(), libc::POLLIN);
                        fds[ERR_TX] = pollfd(errs[TX].as_raw_fd(), libc::POLLIN);
                    }
                }
                None
            }
        }
    }

    /// Moves packets both ways as far as they go now. True if work is left for at once.
    fn serve(&mut self, st: &mut State) -> bool {
        let paused = st.paused;
        let Some(a) = st.active.as_mut().filter(|a| !a.broken && !paused) else {
            return false;
        };
        if st.reset_event && send_reset_event(a) {
            st.reset_event = false;
            let at = a.queues[EVT].avail_idx(&*a.mem, Ordering::Acquire);
            self.reset_wait = at.ok().map(|i| (i.0, Instant::now() + RESET_GRACE));
        }
        if let Some((at, until)) = self.reset_wait {
            let moved = a.queues[EVT]
                .avail_idx(&*a.mem, Ordering::Acquire)
                .map_or(true, |i| i.0 != at);
            if !moved && Instant::now() < until {
                if let Err(e) = a.interrupt.trigger(InterruptKind::UsedBuffer) {
                    log::error!("virtio-vsock: cannot interrupt: {e}");
                }
                return false;
            }
            self.reset_wait = None;
        }
        let Mode::Unix { muxer, .. } = &mut self.mode else {
            return false;
        };
        let more = process_tx(a, muxer, &mut self.bounce);
        process_rx(a, muxer, &mut self.bufs, &mut self.bounce);
        more
    }
}

fn accept_all(socket: &VsockSocket, muxer: &mut Muxer) {
    loop {
        match socket.accept() {
            Ok(Some(fd)) => muxer.accept_host(fd),
            Ok(None) => return,
            Err(e) => {
                log::warn!("vsock: cannot accept a host client: {e}");
                return;
            }
        }
    }
}

/// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET into an event buffer; false while there is none.
fn send_reset_event(a: &mut Active) -> bool {
    loop {
        let Some(chain) = a.pop(EVT) else {
            return false;
        };
        let head = chain.head_index();
        let mut bufs = Vec::new();
        match input_buffers(&chain, MAX_DESCS, &mut bufs) {
            Ok(room) if room >= 4 => {
                let ev = EVENT_TRANSPORT_RESET.to_le_bytes();
                if let Err(e) = scatter(&a.mem, &bufs, &ev) {
                    a.reject("event queue", &e);
                    if !a.add_used(EVT, head, 0) {
                        return false;
                    }
                    continue;
                }
                if a.add_used(EVT, head, 4) {
                    a.notify(EVT);
                    log::info!("virtio-vsock: transport reset sent to the guest");
                }
                return true;
            }
            Ok(room) => a.reject("event queue", &format!("{room} bytes, an event takes 4")),
            Err(e) => a.reject("event queue", &e),
        }
        if !a.add_used(EVT, head, 0) {
            return false;
        }
    }
}

/// Guest packets into the connections. True if the budget ran out with packets left.
fn process_tx(a: &mut Active, muxer: &mut Muxer, bounce: &mut [u8]) -> bool {
    let mut used = false;
    let mut budget = TX_BUDGET;
    let more = 'outer: loop {
        if let Err(e) = a.queues[TX].disable_notification(&*a.mem) {
            a.mark_broken(&e);
            break false;
        }
        loop {
            if budget == 0 {
                break 'outer true;
            }
            let Some(chain) = a.pop(TX) else {
                if a.broken {
                    break 'outer false;
                }
                break;
            };
            budget -= 1;
            let head = chain.head_index();
            take_packet(a, muxer, chain, bounce);
            if !a.add_used(TX, head, 0) {
                break 'outer false;
            }
            used = true;
        }
        match a.queues[TX].enable_notification(&*a.mem) {
            Ok(true) => continue,
            Ok(false) => break false,
            Err(e) => {
                a.mark_broken(&e);
                break false;
            }
        }
    };
    if used {
        a.notify(TX);
    }
    more
}

/// One tx chain: a header and, for RW, its payload. A chain too short for its header is
/// dropped; one whose header says more than it holds breaks its connection's protocol.
fn take_packet(
    a: &mut Active,
    muxer: &mut Muxer,
    chain: super::super::console::chains::Chain,
    bounce: &mut [u8],
) {
    let mut cursor = match TxCursor::new(chain, MAX_DESCS) {
        Ok(c) => c,
        Err(e) => return a.reject("tx", &e),
    };
    let mut raw = [0u8; HDR_LEN];
    match cursor.copy_into(&mut raw) {
        Ok(HDR_LEN) => {}
        Ok(n) => return a.reject("tx", &format!("{n}-byte packet, a header takes {HDR_LEN}")),
        Err(e) => return a.reject("tx", &e),
    }
    let h = Header::parse(&raw);
    if h.op != super::packet::op::RW {
        return muxer.guest_packet(&h, &[]);
    }
    let len = h.len as usize;
    if len > MAX_PAYLOAD {
        return muxer.violation(&h, "payload longer than 64 KiB");
    }
    if len as u64 > cursor.remaining() {
        return muxer.violation(&h, "payload length past the buffer");
    }
    match cursor.copy_into(&mut bounce[..len]) {
        Ok(n) if n == len => muxer.guest_packet(&h, &bounce[..len]),
        Ok(_) => muxer.violation(&h, "payload length past the buffer"),
        Err(e) => muxer.violation(&h, &e.to_string()),
    }
}

/// Packets for the guest into receive buffers, as long as both last.
fn process_rx(
    a: &mut Active,
    muxer: &mut Muxer,
    bufs: &mut Vec<(GuestAddress, u32)>,
    bounce: &mut [u8],
) {
    let mut used = false;
    while muxer.has_for_guest() && !a.broken {
        let Some(chain) = a.pop(RX) else { break };
        let head = chain.head_index();
        let room = match input_buffers(&chain, MAX_DESCS, bufs) {
            Ok(r) if r >= HDR_LEN as u64 => r,
            Ok(r) => {
                a.reject("rx", &format!("{r}-byte buffer, a header takes {HDR_LEN}"));
                if !a.add_used(RX, head, 0) {
                    return;
                }
                used = true;
                continue;
            }
            Err(e) => {
                a.reject("rx", &e);
                if !a.add_used(RX, head, 0) {
                    return;
                }
                used = true;
                continue;
            }
        };
        let room = usize::try_from(room - HDR_LEN as u64).unwrap_or(MAX_PAYLOAD);
        let (hdr_buf, payload) = bounce.split_at_mut(HDR_LEN);
        let Some((h, n)) = muxer.next_for_guest(room, payload) else {
            // Nothing after all: the buffer stays the guest's.
            a.queues[RX].go_to_previous_position();
            break;
        };
        hdr_buf.copy_from_slice(&h.to_bytes());
        if let Err(e) = scatter(&a.mem, bufs, &bounce[..HDR_LEN + n]) {
            log::error!("virtio-vsock: a packet for the guest is lost: {e}");
        }
        if !a.add_used(RX, head, (HDR_LEN + n) as u32) {
            return;
        }
        used = true;
    }
    if used {
        a.notify(RX);
    }
}
