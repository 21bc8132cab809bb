//! The thread of one running virtio-net device (`net<index>`): it owns both queues and the
//! slot's backend, and serves them in one of three ways, switching while the guest runs:
//!
//! - **empty** (no TAP: the link is down): transmitted frames are taken and dropped, as a NIC
//!   with no cable drops them; nothing is received;
//! - **user space** (a TAP, `vhost=off`): frames move between the queues and the TAP here,
//!   receive only while the guest has buffers (the TAP is not read otherwise, so a slow guest
//!   makes the host queue wait, not lose frames), transmit in batches with one interrupt each;
//! - **vhost** (a TAP, `vhost=on`): the host kernel moves the frames ([`crate::virtio::vhost`]);
//!   this thread only watches the kernel's error eventfds.
//!
//! Hot-plug talks to the thread with [`Command`]s (the QMP thread waits for the answer), so the
//! backend always has one owner and a detached TAP is closed when `device_del` returns. A
//! snapshot parks the thread between frames ([`WorkerPause`]) and takes the queues' positions.

use super::backend::NicBackend;
use super::config::{mergeable, tap_offloads};
use super::rx::{self, RxOutcome, RxScratch};
use super::slot::NicSlot;
use super::tap::VNET_HDR_LEN;
use super::tx::{self, IoVecs, MAX_TX_LEN};
use crate::virtio::faults::{self, Rejects};
use crate::virtio::features::{bit, RING_EVENT_IDX, RING_INDIRECT_DESC, VERSION_1};
use crate::virtio::pause::WorkerPause;
use crate::virtio::vhost::Vring;
use crate::virtio::{Interrupt, InterruptKind, QueuePosition};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::ioctl::ioctl_with_ref;

/// Frames handled per direction before the thread looks at its other events again.
const BATCH: usize = 256;
/// Room for the largest frame a TAP hands over with TSO: header, 64 KiB segment, headers.
const RX_BUF_LEN: usize = MAX_TX_LEN;

pub(super) const RX: usize = 0;
pub(super) const TX: usize = 1;

/// The ring features the host kernel is told of in vhost mode.
const VHOST_FEATURES: u64 = bit(VERSION_1)
    | bit(RING_EVENT_IDX)
    | bit(RING_INDIRECT_DESC)
    | bit(super::config::feature::MRG_RXBUF);

/// A request to the running thread.
pub(super) enum Command {
    /// Start serving this backend; on failure it comes back with the reason.
    Attach(NicBackend, SyncSender<Result<(), (NicBackend, String)>>),
    /// Stop serving the backend and hand it over.
    Detach(SyncSender<Option<NicBackend>>),
}

/// Everything the thread owns.
pub(super) struct Worker {
    pub mem: GuestMemoryMmap,
    pub queues: [Queue; 2],
    pub evts: [EventFd; 2],
    pub interrupt: Arc<Interrupt>,
    pub acked: u64,
    pub backend: Option<NicBackend>,
    pub slot: Arc<NicSlot>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Empty,
    User,
    Vhost,
}

struct Running {
    w: Worker,
    ctl: Receiver<Command>,
    wake: EventFd,
    stop: Arc<AtomicBool>,
    pause: Arc<WorkerPause>,
    mode: Mode,
    /// Signalled by the kernel when it cannot use a ring (vhost mode).
    errs: [EventFd; 2],
    rx_buf: Vec<u8>,
    /// Length of the frame in `rx_buf` that waits for receive buffers.
    rx_pending: Option<usize>,
    /// No receive buffers: the TAP is not read until the guest adds some.
    rx_blocked: bool,
    /// A transmit batch stopped at its limit with chains left.
    tx_more: bool,
    /// The TAP's send buffer is full: the next frame waits until it is writable.
    tx_blocked: bool,
    broken: [bool; 2],
    scratch: RxScratch,
    iov: IoVecs,
    rejects: Rejects,
}

/// Handle on a running thread; dropping it stops and joins the thread.
pub(super) struct WorkerHandle {
    ctl: Sender<Command>,
    wake: EventFd,
    stop: Arc<AtomicBool>,
    pause: Arc<WorkerPause>,
    thread: Option<JoinHandle<Option<NicBackend>>>,
}

impl WorkerHandle {
    /// Starts `worker` on a thread called `name`.
    pub fn spawn(name: String, worker: Worker) -> io::Result<Self> {
        let wake = EventFd::new(EFD_NONBLOCK)?;
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(WorkerPause::default());
        let (tx, rx) = mpsc::channel();
        // A queue the driver broke stays broken (a restored device starts this way).
        let broken = worker.interrupt.needs_reset();
        let running = Running {
            w: worker,
            ctl: rx,
            wake: wake.try_clone()?,
            stop: stop.clone(),
            pause: pause.clone(),
            mode: Mode::Empty,
            errs: [EventFd::new(EFD_NONBLOCK)?, EventFd::new(EFD_NONBLOCK)?],
            rx_buf: vec![0; RX_BUF_LEN],
            rx_pending: None,
            rx_blocked: false,
            tx_more: false,
            tx_blocked: false,
            broken: [broken; 2],
            scratch: RxScratch::default(),
            iov: IoVecs(Vec::with_capacity(64)),
            rejects: Rejects::default(),
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || running.run())?;
        Ok(Self {
            ctl: tx,
            wake,
            stop,
            pause,
            thread: Some(thread),
        })
    }

    fn wake(&self) {
        if let Err(e) = self.wake.write(1) {
            log::error!("virtio-net: cannot wake the device thread: {e}");
        }
    }

    fn send(&self, c: Command) -> bool {
        if self.ctl.send(c).is_err() {
            return false;
        }
        self.wake();
        true
    }

    /// For a snapshot: the thread finishes the frame in progress and parks; returns where the
    /// receive and transmit queues stand. It takes nothing more from the rings (and reads
    /// nothing from the TAP) until [`WorkerHandle::release`].
    pub fn park(&self) -> Result<Vec<QueuePosition>, String> {
        let p = self.pause.request(|| self.wake())?;
        if p.len() != 2 {
            self.release();
            return Err("the NIC's thread cannot report its queues (vhost-net holds them)".into());
        }
        Ok(p)
    }

    /// Lets a parked thread go on.
    pub fn release(&self) {
        self.pause.release();
    }

    /// Has the thread serve `backend`; gives it back with the reason if it cannot.
    pub fn attach(&self, backend: NicBackend) -> Result<(), (Option<NicBackend>, String)> {
        let (tx, rx) = mpsc::sync_channel(1);
        if !self.send(Command::Attach(backend, tx)) {
            return Err((None, "the device thread has stopped".into()));
        }
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err((b, why))) => Err((Some(b), why)),
            Err(_) => Err((None, "the device thread has stopped".into())),
        }
    }

    /// Takes the backend away from the thread (None if it had none).
    pub fn detach(&self) -> Option<NicBackend> {
        let (tx, rx) = mpsc::sync_channel(1);
        if !self.send(Command::Detach(tx)) {
            return None;
        }
        rx.recv().ok().flatten()
    }

    /// Stops the thread after what it is doing and returns the backend it served.
    pub fn stop(&mut self) -> Option<NicBackend> {
        self.stop.store(true, Ordering::SeqCst);
        self.pause.release();
        self.wake();
        let t = self.thread.take()?;
        match t.join() {
            Ok(b) => b,
            Err(_) => {
                log::error!("virtio-net: the device thread panicked");
                None
            }
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        // A backend still held goes with the thread.
        drop(self.stop());
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// VHOST_NET_SET_BACKEND: the TAP behind vring `index` (`-1`: none).
fn set_vhost_backend(
    dev: &crate::virtio::vhost::VhostDevice,
    index: u32,
    fd: i32,
) -> io::Result<()> {
    let f = vhost::vhost_kern::vhost_binding::vhost_vring_file { index, fd };
    // SAFETY: VHOST_NET_SET_BACKEND reads the vhost_vring_file we pass.
    let r = unsafe {
        ioctl_with_ref(
            dev,
            vhost::vhost_kern::vhost_binding::VHOST_NET_SET_BACKEND(),
            &f,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Running {
    fn index(&self) -> usize {
        self.w.slot.index
    }

    fn run(mut self) -> Option<NicBackend> {
        sandbox::seccomp::apply(sandbox::seccomp::ThreadKind::Net);
        if let Some(b) = self.w.backend.take() {
            if let Err((b, why)) = self.enter(b) {
                // Held but not served (device_del still takes it out); the guest sees no link.
                log::error!(
                    "virtio-net {}: cannot serve {}: {why}",
                    self.index(),
                    b.tap.name()
                );
                self.w.backend = Some(b);
                self.w.slot.set_link(false);
            }
        }
        self.serve_all();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let vhost = self.mode == Mode::Vhost;
            // The TAP: readable while the guest has receive buffers, writable while a frame
            // waits for room in the TAP's send buffer.
            let (tap_fd, tap_events) = match (&self.mode, &self.w.backend) {
                (Mode::User, Some(b)) => {
                    let mut ev = 0;
                    if !self.rx_blocked && !self.broken[RX] {
                        ev |= libc::POLLIN;
                    }
                    if self.tx_blocked {
                        ev |= libc::POLLOUT;
                    }
                    (if ev != 0 { b.tap.as_raw_fd() } else { -1 }, ev)
                }
                _ => (-1, 0),
            };
            let queue_fd = |i: usize, wanted: bool| {
                if wanted && !vhost && !self.broken[i] {
                    self.w.evts[i].as_raw_fd()
                } else {
                    -1
                }
            };
            let mut fds = [
                pollfd(self.wake.as_raw_fd()),
                pollfd(queue_fd(TX, !self.tx_blocked)),
                pollfd(queue_fd(RX, self.mode == Mode::User)),
                libc::pollfd {
                    fd: tap_fd,
                    events: tap_events,
                    revents: 0,
                },
                pollfd(if vhost { self.errs[RX].as_raw_fd() } else { -1 }),
                pollfd(if vhost { self.errs[TX].as_raw_fd() } else { -1 }),
            ];
            let timeout = if self.tx_more { 0 } else { -1 };
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call, and every
            // descriptor in it belongs to `self`, which outlives it.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("virtio-net {}: poll failed: {e}", self.index());
                break;
            }
            let ready = |i: usize| fds[i].revents != 0;
            if ready(0) {
                let _ = self.wake.read();
                if self.stop.load(Ordering::SeqCst) {
                    break;
                }
                self.commands();
                if self.pause.requested() {
                    self.park();
                    continue;
                }
            }
            let tap_out = fds[3].revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0;
            if tap_out && self.tx_blocked {
                self.tx_blocked = false;
            }
            if ready(1) || self.tx_more || tap_out {
                // EAGAIN only if another reader raced us; nothing to do then.
                let _ = self.w.evts[TX].read();
                self.process_tx();
            }
            if ready(2) {
                let _ = self.w.evts[RX].read();
                self.rx_blocked = false;
                self.process_rx();
            } else if fds[3].revents & libc::POLLIN != 0 {
                self.process_rx();
            }
            for (i, q) in [(4, RX), (5, TX)] {
                if ready(i) {
                    let _ = self.errs[q].read();
                    self.mark_broken(q, &"the host kernel (vhost) cannot use the ring");
                }
            }
        }
        self.finish()
    }

    /// Leaves whatever mode the thread is in and returns the backend.
    fn finish(&mut self) -> Option<NicBackend> {
        self.leave();
        self.w.backend.take()
    }

    /// Reports the queues' positions to a snapshot and waits until it is written; then serves
    /// what the driver queued meanwhile. The rings belong to the host kernel in vhost mode, so
    /// there is nothing to report then (the snapshot refuses such a NIC before asking).
    fn park(&mut self) {
        let positions = if self.mode == Mode::Vhost {
            Vec::new()
        } else {
            self.w.queues.iter().map(QueuePosition::of).collect()
        };
        self.pause.park(positions);
        self.serve_all();
    }

    fn commands(&mut self) {
        while let Ok(c) = self.ctl.try_recv() {
            match c {
                Command::Attach(b, reply) => {
                    let r = if self.w.backend.is_some() {
                        Err((b, "the slot already holds a TAP".to_string()))
                    } else {
                        self.enter(b)
                    };
                    let _ = reply.send(r);
                    self.serve_all();
                }
                Command::Detach(reply) => {
                    self.leave();
                    let _ = reply.send(self.w.backend.take());
                    self.serve_all();
                }
            }
        }
    }

    /// Starts serving `b`: offloads as the guest negotiated them, then user space or vhost.
    fn enter(&mut self, b: NicBackend) -> Result<(), (NicBackend, String)> {
        let offloads = tap_offloads(self.w.acked);
        if let Err(e) = b.tap.set_offload(offloads) {
            return Err((b, format!("TUNSETOFFLOAD 0x{offloads:x}: {e}")));
        }
        self.w.backend = Some(b);
        if self.w.backend.as_ref().is_some_and(|b| b.vhost.is_some()) {
            if let Err(why) = self.start_vhost() {
                return Err((self.w.backend.take().expect("set above"), why));
            }
            self.mode = Mode::Vhost;
        } else {
            self.mode = Mode::User;
            self.rx_blocked = false;
            self.rx_pending = None;
        }
        Ok(())
    }

    fn start_vhost(&mut self) -> Result<(), String> {
        let Running { w, errs, .. } = self;
        let b = w.backend.as_mut().expect("caller set it");
        let tap_fd = b.tap.as_raw_fd();
        let dev = b.vhost.as_mut().expect("caller checked");
        let call = w.interrupt.irqfd();
        let vrings = [
            Vring {
                index: RX,
                queue: &w.queues[RX],
                kick: &w.evts[RX],
                call,
                err: &errs[RX],
            },
            Vring {
                index: TX,
                queue: &w.queues[TX],
                kick: &w.evts[TX],
                call,
                err: &errs[TX],
            },
        ];
        dev.start(&w.mem, w.acked & VHOST_FEATURES, &vrings)
            .map_err(|e| e.to_string())?;
        for i in [RX, TX] {
            if let Err(e) = set_vhost_backend(dev, i as u32, tap_fd) {
                let _ = dev.stop(2);
                return Err(format!("VHOST_NET_SET_BACKEND: {e}"));
            }
        }
        w.interrupt.set_kernel_data_path(true);
        log::info!(
            "virtio-net {}: vhost-net serves the rings (rx at {}, tx at {})",
            w.slot.index,
            w.queues[RX].next_avail(),
            w.queues[TX].next_avail()
        );
        Ok(())
    }

    /// Stops serving the backend (which stays in `self.w.backend`): back to the empty mode,
    /// with the rings taken back from the kernel at the positions it reached.
    fn leave(&mut self) {
        self.tx_blocked = false;
        match self.mode {
            Mode::Empty => {}
            Mode::User => {
                if self.rx_pending.take().is_some() {
                    log::debug!(
                        "virtio-net {}: a received frame is dropped with its TAP",
                        self.index()
                    );
                }
            }
            Mode::Vhost => self.stop_vhost(),
        }
        self.mode = Mode::Empty;
    }

    fn stop_vhost(&mut self) {
        let index = self.index();
        let Some(dev) = self.w.backend.as_mut().and_then(|b| b.vhost.as_mut()) else {
            return;
        };
        for i in [RX, TX] {
            if let Err(e) = set_vhost_backend(dev, i as u32, -1) {
                log::error!("virtio-net {index}: VHOST_NET_SET_BACKEND -1: {e}");
            }
        }
        self.w.interrupt.set_kernel_data_path(false);
        match dev.stop(2) {
            Ok(positions) => {
                for (q, pos) in self.w.queues.iter_mut().zip(positions) {
                    q.set_next_avail(pos);
                }
            }
            Err(e) => {
                // The rings' state is unknown: serve nothing more until the driver resets.
                log::error!("virtio-net {index}: taking the rings back from vhost: {e}");
                self.mark_broken(RX, &e);
                self.mark_broken(TX, &e);
            }
        }
        for (i, q) in self.w.queues.iter_mut().enumerate() {
            match q.used_idx(&self.w.mem, Ordering::Acquire) {
                Ok(used) => q.set_next_used(used.0),
                Err(e) => {
                    log::error!("virtio-net {index}: queue {i}: used index unreadable: {e}");
                    self.broken[i] = true;
                }
            }
        }
        log::info!(
            "virtio-net {index}: rings back from vhost-net (rx at {}, tx at {})",
            self.w.queues[RX].next_avail(),
            self.w.queues[TX].next_avail()
        );
    }

    fn serve_all(&mut self) {
        self.process_tx();
        self.process_rx();
    }

    /// The driver broke queue `q` itself: stop serving it until a device reset.
    fn mark_broken(&mut self, q: usize, why: &dyn std::fmt::Display) {
        let device = format_args!("virtio-net {}", self.w.slot.index);
        let queue = if q == RX {
            "the receive queue"
        } else {
            "the transmit queue"
        };
        let interrupt = Some(&*self.w.interrupt);
        faults::mark_broken(&mut self.broken[q], interrupt, &device, queue, why);
    }

    fn reject(&mut self, what: &str, why: &dyn std::fmt::Display) {
        let index = self.index();
        self.rejects
            .log(&format_args!("virtio-net {index}: {what}"), why);
    }

    fn notify(&mut self, q: usize) {
        match self.w.queues[q].needs_notification(&self.w.mem) {
            Ok(true) => {
                if let Err(e) = self.w.interrupt.trigger(InterruptKind::UsedBuffer) {
                    log::error!("virtio-net {}: cannot interrupt: {e}", self.index());
                }
            }
            Ok(false) => {}
            Err(e) => self.mark_broken(q, &e),
        }
    }

    /// Sends (or, with no TAP, drops) every available transmit chain, a batch at a time. A
    /// frame the TAP cannot take yet (its send buffer is full) goes back into the ring and
    /// waits for the TAP to be writable: nothing the guest sends is lost to back-pressure.
    fn process_tx(&mut self) {
        self.tx_more = false;
        if self.broken[TX] || self.mode == Mode::Vhost || self.tx_blocked {
            return;
        }
        let mut used = false;
        let mut count = 0;
        'batch: loop {
            if let Err(e) = self.w.queues[TX].disable_notification(&self.w.mem) {
                return self.mark_broken(TX, &e);
            }
            loop {
                // A snapshot waits for the frame in progress only (the wake-up it sent parks
                // the thread); the rest are sent after it.
                if count == BATCH || self.pause.requested() {
                    self.tx_more = true;
                    break 'batch;
                }
                let chain = match self.w.queues[TX].iter(&self.w.mem) {
                    Ok(mut avail) => avail.next(),
                    Err(e) => return self.mark_broken(TX, &e),
                };
                let Some(chain) = chain else { break };
                let head = chain.head_index();
                match tx::gather(chain, &self.w.mem, &mut self.iov) {
                    Ok(len) => {
                        if !self.send_frame(len) {
                            self.w.queues[TX].go_to_previous_position();
                            self.tx_blocked = true;
                            break 'batch;
                        }
                    }
                    Err(e) => {
                        self.w.slot.stats.tx_errors.fetch_add(1, Ordering::Relaxed);
                        self.reject("transmit chain refused", &e);
                    }
                }
                if let Err(e) = self.w.queues[TX].add_used(&self.w.mem, head, 0) {
                    return self.mark_broken(TX, &e);
                }
                used = true;
                count += 1;
            }
            match self.w.queues[TX].enable_notification(&self.w.mem) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => return self.mark_broken(TX, &e),
            }
        }
        if used {
            self.notify(TX);
        }
    }

    /// Writes the frame gathered in `self.iov` to the TAP, if there is one. False if the TAP
    /// cannot take it now (its send buffer is full): the caller keeps it for later.
    fn send_frame(&mut self, len: usize) -> bool {
        let stats = &self.w.slot.stats;
        let tap = match (&self.mode, &self.w.backend) {
            (Mode::User, Some(b)) => &b.tap,
            _ => {
                stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        };
        // SAFETY: every iovec was made by `tx::gather` from a guest memory slice that `mem`
        // (held by this thread) keeps mapped.
        match unsafe { tap.write_frame(&self.iov.0) } {
            Ok(_) => {
                stats.tx_frames.fetch_add(1, Ordering::Relaxed);
                stats
                    .tx_bytes
                    .fetch_add((len - VNET_HDR_LEN) as u64, Ordering::Relaxed);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => {
                // EIO: the host side of the TAP is down; the frame is lost, as on a wire.
                stats.tx_dropped.fetch_add(1, Ordering::Relaxed);
                log::debug!("virtio-net {}: TAP write: {e}", self.index());
                true
            }
        }
    }

    /// Moves frames from the TAP into the guest while it has buffers, a batch at a time.
    fn process_rx(&mut self) {
        if self.broken[RX] || self.mode != Mode::User {
            return;
        }
        let mergeable = mergeable(self.w.acked);
        let mut used = false;
        let mut frames = 0;
        if let Err(e) = self.w.queues[RX].disable_notification(&self.w.mem) {
            return self.mark_broken(RX, &e);
        }
        loop {
            if frames == BATCH || self.pause.requested() {
                break;
            }
            let len = match self.rx_pending {
                Some(len) => len,
                None => {
                    // Take a frame off the TAP only when a buffer waits for it.
                    match rx::has_buffers(&self.w.queues[RX], &self.w.mem) {
                        Ok(true) => {}
                        Ok(false) => {
                            if self.wait_for_buffers() {
                                continue;
                            }
                            break;
                        }
                        Err(e) => {
                            self.mark_broken(RX, &e);
                            break;
                        }
                    }
                    let Some(b) = self.w.backend.as_ref() else {
                        break;
                    };
                    match b.tap.read_frame(&mut self.rx_buf) {
                        Ok(n) if n > VNET_HDR_LEN => {
                            self.rx_pending = Some(n);
                            n
                        }
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            log::warn!("virtio-net {}: TAP read: {e}", self.index());
                            break;
                        }
                    }
                }
            };
            let frame = &mut self.rx_buf[..len];
            let outcome = rx::deliver(
                &mut self.w.queues[RX],
                &self.w.mem,
                frame,
                mergeable,
                &mut self.scratch,
            );
            let stats = &self.w.slot.stats;
            match outcome {
                RxOutcome::Delivered { bad, .. } => {
                    self.rx_pending = None;
                    stats.rx_frames.fetch_add(1, Ordering::Relaxed);
                    stats
                        .rx_bytes
                        .fetch_add((len - VNET_HDR_LEN) as u64, Ordering::Relaxed);
                    used = true;
                    frames += 1;
                    self.count_bad(bad);
                }
                RxOutcome::TooBig { bad } => {
                    self.rx_pending = None;
                    stats.rx_dropped.fetch_add(1, Ordering::Relaxed);
                    used |= bad > 0;
                    self.count_bad(bad);
                    self.reject(
                        "received frame dropped",
                        &format_args!(
                            "{} bytes do not fit the guest's receive buffers",
                            len - VNET_HDR_LEN
                        ),
                    );
                }
                RxOutcome::NoRoom { bad } => {
                    used |= bad > 0;
                    self.count_bad(bad);
                    if self.wait_for_buffers() {
                        continue;
                    }
                    break;
                }
                RxOutcome::Broken(e) => {
                    self.mark_broken(RX, &e);
                    break;
                }
            }
        }
        if used {
            self.notify(RX);
        }
    }

    fn count_bad(&mut self, bad: u16) {
        if bad > 0 {
            self.w
                .slot
                .stats
                .rx_errors
                .fetch_add(u64::from(bad), Ordering::Relaxed);
            let why = self.scratch.last_bad;
            if let Some(why) = why {
                self.reject("receive chain refused", &why);
            }
        }
    }

    /// No room for the next frame: asks the guest to notify when it adds buffers beyond those
    /// it has offered. Returns true if some arrived meanwhile (try again), false if the TAP must
    /// wait for the notification.
    fn wait_for_buffers(&mut self) -> bool {
        let q = &mut self.w.queues[RX];
        let seen = match q.avail_idx(&self.w.mem, Ordering::Acquire) {
            Ok(i) => i.0,
            Err(e) => {
                self.mark_broken(RX, &e);
                return false;
            }
        };
        // The buffers up to `seen` are known not to be enough: the notification must come for
        // the next one (with EVENT_IDX, `avail_event` is where the queue's next index is), and
        // "more" means beyond `seen`.
        let next = q.next_avail();
        q.set_next_avail(seen);
        let r = q.enable_notification(&self.w.mem);
        q.set_next_avail(next);
        match r {
            Ok(true) => true,
            Ok(false) => {
                self.rx_blocked = true;
                false
            }
            Err(e) => {
                self.mark_broken(RX, &e);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
