//! The `balloon` thread: it serves the queues while the driver has the device started, and
//! sends the `BALLOON_CHANGED` notices at most once a second.
//!
//! Unlike a disk worker it lives from the machine's setup to the VMM's exit: it is started
//! by the main thread before any seccomp filter exists, so it runs under its own list only
//! (it emits QMP events, which the vCPU threads that start disk workers may not). The device
//! hands it the queues at DRIVER_OK and takes them back at a reset through [`Command`]s.

use super::config::QueueRole;
use super::oddity::{Oddities, Oddity};
use super::pages::Outcome;
use super::request;
use super::stats::GuestStats;
use super::Shared;
use crate::bus::lock;
use crate::virtio::faults;
use crate::virtio::{Interrupt, InterruptKind};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::timerfd::TimerFd;

/// Shortest time between two change notices.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// The queues the driver started the device with.
pub struct Activation {
    pub mem: GuestMemoryMmap,
    pub interrupt: Arc<Interrupt>,
    pub queues: Vec<(QueueRole, Queue, EventFd)>,
}

/// What the device (on a vCPU thread) and its handles (QMP) ask of the thread.
pub enum Command {
    Activate(Box<Activation>),
    /// Drop the queues and empty the balloon; the sender is dropped when done.
    Reset(Sender<()>),
    /// The driver wrote `actual`.
    ActualWritten,
    /// Give the statistics buffer back to the guest, so it reports again.
    RefreshStats,
    Stop,
}

/// How the device and its handles reach the thread.
pub struct Link {
    tx: Sender<Command>,
    wake: EventFd,
    /// A reset or stop is waiting: stop serving between requests.
    urgent: AtomicBool,
}

impl Link {
    /// Queues `c` and wakes the thread; false if the thread is gone.
    pub fn send(&self, c: Command) -> bool {
        if matches!(c, Command::Reset(_) | Command::Stop) {
            self.urgent.store(true, Ordering::SeqCst);
        }
        if self.tx.send(c).is_err() {
            return false;
        }
        if let Err(e) = self.wake.write(1) {
            log::error!("virtio-balloon: cannot wake the balloon thread: {e}");
        }
        true
    }

    /// Resets the device and waits until the thread has let go of the queues.
    pub fn reset(&self) {
        let (done, wait) = channel();
        if self.send(Command::Reset(done)) {
            // Returns when the thread drops `done` (or dies).
            let _ = wait.recv();
        }
    }
}

/// The running thread; dropping it stops and joins it.
pub struct WorkerHandle {
    link: Arc<Link>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Starts the `balloon` thread for `shared`.
    pub fn spawn(shared: Arc<Shared>) -> io::Result<Self> {
        let (tx, rx) = channel();
        let wake = EventFd::new(EFD_NONBLOCK)?;
        let link = Arc::new(Link {
            tx,
            wake: wake.try_clone()?,
            urgent: AtomicBool::new(false),
        });
        let running = Running {
            shared,
            rx,
            wake,
            link: link.clone(),
            timer: TimerFd::new().map_err(io::Error::from)?,
            active: None,
            broken: false,
            stats_head: None,
            odd: Oddities::default(),
            notices: Notices::default(),
        };
        let thread = std::thread::Builder::new()
            .name("balloon".into())
            .spawn(move || running.run())?;
        Ok(WorkerHandle {
            link,
            thread: Some(thread),
        })
    }

    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.link.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("virtio-balloon: the balloon thread panicked");
            }
        }
    }
}

/// When to send the change notice: at once if none went out in the last second, else when the
/// second is over (with the value then), so the last value always goes out.
#[derive(Debug, Default)]
pub struct Notices {
    last: Option<(u64, Instant)>,
    armed: bool,
}

/// What to do about a change of `actual`.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    Send(u64),
    /// Arm the timer for this long.
    Later(Duration),
    Nothing,
}

impl Notices {
    /// `actual` (bytes) may have changed at `now`.
    pub fn changed(&mut self, actual: u64, now: Instant) -> Notice {
        if self.armed {
            return Notice::Nothing;
        }
        match self.last {
            Some((v, _)) if v == actual => Notice::Nothing,
            Some((_, at)) if now.duration_since(at) < EVENT_INTERVAL => {
                self.armed = true;
                Notice::Later(EVENT_INTERVAL - now.duration_since(at))
            }
            _ => {
                self.last = Some((actual, now));
                Notice::Send(actual)
            }
        }
    }

    /// The timer fired at `now`; `actual` is the value now.
    pub fn timer(&mut self, actual: u64, now: Instant) -> Option<u64> {
        self.armed = false;
        match self.last {
            Some((v, _)) if v == actual => None,
            _ => {
                self.last = Some((actual, now));
                Some(actual)
            }
        }
    }
}

struct Running {
    shared: Arc<Shared>,
    rx: Receiver<Command>,
    wake: EventFd,
    link: Arc<Link>,
    timer: TimerFd,
    active: Option<Activation>,
    /// The driver broke a queue: nothing is served until a reset.
    broken: bool,
    /// The statistics buffer the device holds until it wants new statistics.
    stats_head: Option<u16>,
    odd: Oddities,
    notices: Notices,
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Most queues: inflate, deflate, statistics, reporting.
const MAX_QUEUES: usize = 4;

impl Running {
    fn run(mut self) {
        sandbox::seccomp::apply(sandbox::seccomp::ThreadKind::Balloon);
        loop {
            let mut fds = [pollfd(-1); 2 + MAX_QUEUES];
            fds[0] = pollfd(self.wake.as_raw_fd());
            fds[1] = pollfd(self.timer.as_raw_fd());
            if let (Some(a), false) = (&self.active, self.broken) {
                for (fd, (_, _, evt)) in fds[2..].iter_mut().zip(&a.queues) {
                    *fd = pollfd(evt.as_raw_fd());
                }
            }
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call (entries
            // of -1 are ignored) and every descriptor in it is owned by `self`.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("virtio-balloon: poll failed: {e}");
                return;
            }
            if fds[0].revents != 0 {
                let _ = self.wake.read();
                if !self.commands() {
                    return;
                }
                // The queues may have changed: look at them again with a new poll.
                continue;
            }
            if fds[1].revents != 0 {
                let _ = self.timer.wait();
                let actual = self.shared.actual_bytes();
                if let Some(v) = self.notices.timer(actual, Instant::now()) {
                    self.shared.notify_change(v);
                }
            }
            for (i, fd) in fds[2..].iter().enumerate() {
                if fd.revents == 0 {
                    continue;
                }
                if let Some((_, _, evt)) = self.active.as_ref().and_then(|a| a.queues.get(i)) {
                    // EAGAIN only if the notification was consumed already; serve anyway.
                    let _ = evt.read();
                }
                self.serve(i);
            }
        }
    }

    /// Handles every queued command; false once told to stop.
    fn commands(&mut self) -> bool {
        self.link.urgent.store(false, Ordering::SeqCst);
        while let Ok(c) = self.rx.try_recv() {
            match c {
                Command::Activate(a) => self.activate(*a),
                Command::Reset(done) => {
                    self.reset();
                    drop(done);
                }
                Command::ActualWritten => self.actual_written(),
                Command::RefreshStats => self.refresh_stats(),
                Command::Stop => return false,
            }
        }
        true
    }

    fn activate(&mut self, a: Activation) {
        // The transport resets the device before it starts it again; what the previous
        // start held goes anyway.
        self.stats_head = None;
        self.odd.clear();
        // A queue the driver broke stays broken (a restored device starts this way).
        self.broken = a.interrupt.needs_reset();
        let n = a.queues.len();
        self.active = Some(a);
        // Requests made available before the device started.
        for i in 0..n {
            self.serve(i);
        }
    }

    fn reset(&mut self) {
        self.active = None;
        self.broken = false;
        self.stats_head = None;
        self.odd.clear();
        lock(&self.shared.pages).clear();
        if self.shared.set_actual(0) {
            self.actual_written();
        }
    }

    fn actual_written(&mut self) {
        let actual = self.shared.actual_bytes();
        match self.notices.changed(actual, Instant::now()) {
            Notice::Send(v) => self.shared.notify_change(v),
            Notice::Later(d) => {
                // A zero duration would disarm the timer instead.
                let d = d.max(Duration::from_millis(1));
                if let Err(e) = self.timer.reset(d, None) {
                    log::error!("virtio-balloon: cannot arm the notice timer: {e}");
                }
            }
            Notice::Nothing => {}
        }
    }

    /// The driver broke a queue: stop serving until it resets the device.
    fn mark_broken(&mut self, why: &dyn std::fmt::Display) {
        let interrupt = self.active.as_ref().map(|a| &*a.interrupt);
        faults::mark_broken(
            &mut self.broken,
            interrupt,
            &"virtio-balloon",
            "a queue",
            why,
        );
    }

    fn serve(&mut self, index: usize) {
        if self.broken {
            return;
        }
        let Some(role) = self
            .active
            .as_ref()
            .and_then(|a| a.queues.get(index))
            .map(|q| q.0)
        else {
            return;
        };
        let result = match role {
            QueueRole::Inflate | QueueRole::Deflate | QueueRole::Reporting => {
                self.serve_pages(index, role)
            }
            QueueRole::Stats => self.serve_stats(index),
        };
        if let Err(e) = result {
            self.mark_broken(&e);
        }
    }

    /// Inflate, deflate and reporting requests: each is done and given back at once.
    fn serve_pages(&mut self, index: usize, role: QueueRole) -> Result<(), virtio_queue::Error> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let (mem, irq) = (&a.mem, &a.interrupt);
        let q = &mut a.queues[index].1;
        let (shared, odd, urgent) = (&self.shared, &mut self.odd, &self.link.urgent);
        let mut used = false;
        let mut total = Outcome::default();
        loop {
            q.disable_notification(mem)?;
            loop {
                // A reset or stop waits for the request in progress only.
                if urgent.load(Ordering::SeqCst) {
                    break;
                }
                let next = q.iter(mem)?.next();
                let Some(chain) = next else { break };
                let head = chain.head_index();
                let out = do_request(role, chain, mem, shared, odd);
                add(&mut total, &out);
                q.add_used(mem, head, 0)?;
                used = true;
            }
            if urgent.load(Ordering::SeqCst) || !q.enable_notification(mem)? {
                break;
            }
        }
        note(odd, &total);
        if total.released + total.returned > 0 {
            log::debug!(
                "virtio-balloon: {role:?}: {} pages released, {} returned, {} in the balloon",
                total.released,
                total.returned,
                lock(&shared.pages).in_balloon()
            );
        }
        if used && q.needs_notification(mem)? {
            interrupt(irq);
        }
        Ok(())
    }

    /// Statistics: the device keeps the newest buffer until it wants the next report.
    fn serve_stats(&mut self, index: usize) -> Result<(), virtio_queue::Error> {
        let Some(a) = self.active.as_mut() else {
            return Ok(());
        };
        let (mem, irq) = (&a.mem, &a.interrupt);
        let q = &mut a.queues[index].1;
        let mut returned = false;
        loop {
            let next = q.iter(mem)?.next();
            let Some(chain) = next else { break };
            let head = chain.head_index();
            let values = request::statistics(chain, mem, &mut self.odd);
            if let Some(old) = self.stats_head.replace(head) {
                // A driver keeps one buffer on the queue; give the older one back.
                self.odd.note(Oddity::ExtraStatsBuffer, 1);
                q.add_used(mem, old, 0)?;
                returned = true;
            }
            self.shared.stats_received(GuestStats {
                values,
                received: SystemTime::now(),
            });
        }
        if returned && q.needs_notification(mem)? {
            interrupt(irq);
        }
        Ok(())
    }

    fn refresh_stats(&mut self) {
        let Some(head) = self.stats_head.take() else {
            // The guest has the buffer: its report is on the way.
            return;
        };
        let Some(a) = self.active.as_mut() else {
            return;
        };
        let Some(index) = a.queues.iter().position(|(r, _, _)| *r == QueueRole::Stats) else {
            return;
        };
        let (mem, irq) = (&a.mem, &a.interrupt);
        let q = &mut a.queues[index].1;
        let r = q
            .add_used(mem, head, 0)
            .and_then(|()| q.needs_notification(mem));
        match r {
            Ok(true) => interrupt(irq),
            Ok(false) => {}
            Err(e) => self.mark_broken(&e),
        }
    }
}

fn interrupt(irq: &Interrupt) {
    if let Err(e) = irq.trigger(InterruptKind::UsedBuffer) {
        log::error!("virtio-balloon: cannot interrupt: {e}");
    }
}

/// One inflate, deflate or reporting request.
fn do_request(
    role: QueueRole,
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    shared: &Shared,
    odd: &mut Oddities,
) -> Outcome {
    match role {
        QueueRole::Inflate => {
            let mut f = request::frames(chain, mem, odd);
            lock(&shared.pages).inflate(&mut f)
        }
        QueueRole::Deflate => {
            let mut f = request::frames(chain, mem, odd);
            lock(&shared.pages).deflate(&mut f)
        }
        QueueRole::Reporting => {
            let mut total = Outcome::default();
            for (addr, len) in request::free_ranges(chain, odd) {
                let out = lock(&shared.pages).release_free(addr, len);
                add(&mut total, &out);
            }
            total
        }
        QueueRole::Stats => Outcome::default(),
    }
}

fn add(total: &mut Outcome, o: &Outcome) {
    total.released += o.released;
    total.returned += o.returned;
    total.outside += o.outside;
    total.repeated += o.repeated;
    total.not_in_balloon += o.not_in_balloon;
    total.unaligned += o.unaligned;
    total.failed += o.failed;
}

fn note(odd: &mut Oddities, o: &Outcome) {
    odd.note(Oddity::OutsideRam, o.outside);
    odd.note(Oddity::Repeated, o.repeated);
    odd.note(Oddity::NotInBalloon, o.not_in_balloon);
    odd.note(Oddity::UnalignedRange, o.unaligned);
    odd.note(Oddity::ReleaseFailed, o.failed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_go_out_at_once_then_at_most_once_a_second_with_the_last_value() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut n = Notices::default();
        assert_eq!(n.changed(100, ms(0)), Notice::Send(100));
        assert_eq!(n.changed(100, ms(10)), Notice::Nothing, "unchanged");
        assert_eq!(
            n.changed(90, ms(200)),
            Notice::Later(Duration::from_millis(800))
        );
        assert_eq!(n.changed(80, ms(300)), Notice::Nothing, "timer armed");
        assert_eq!(n.timer(70, ms(1000)), Some(70), "the value when it fires");
        assert_eq!(n.changed(70, ms(1100)), Notice::Nothing);
        assert_eq!(
            n.changed(60, ms(1500)),
            Notice::Later(Duration::from_millis(500))
        );
        assert_eq!(n.timer(70, ms(2000)), None, "back where it was");
        assert_eq!(n.changed(50, ms(3500)), Notice::Send(50), "a quiet second");
    }
}
