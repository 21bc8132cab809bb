//! The thread of one running virtio-blk device: waits for queue notifications (or a stop
//! request), executes every available request synchronously and interrupts the guest.

use super::aligned::AlignedBuf;
use super::execute::{execute, S_IOERR};
use super::request::parse;
use super::slot::Slot;
use super::IO_CHUNK;
use crate::bus::lock;
use crate::virtio::faults::{self, Rejects};
use crate::virtio::pause::WorkerPause;
use crate::virtio::{Interrupt, InterruptKind, QueuePosition};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Everything the thread owns.
pub struct Worker {
    pub mem: GuestMemoryMmap,
    pub queue: Queue,
    pub queue_evt: EventFd,
    pub interrupt: Arc<Interrupt>,
    pub slot: Arc<Slot>,
}

struct Running {
    w: Worker,
    stop_evt: EventFd,
    stop: Arc<AtomicBool>,
    pause: Arc<WorkerPause>,
    buf: AlignedBuf,
    broken: bool,
    rejects: Rejects,
}

/// Handle on a running worker thread; dropping it stops and joins the thread.
pub struct WorkerHandle {
    stop_evt: EventFd,
    stop: Arc<AtomicBool>,
    pause: Arc<WorkerPause>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Starts `worker` on a thread called `name`.
    pub fn spawn(name: String, worker: Worker) -> io::Result<Self> {
        let stop_evt = EventFd::new(EFD_NONBLOCK)?;
        let stop = Arc::new(AtomicBool::new(false));
        let pause = Arc::new(WorkerPause::default());
        // A queue the driver broke stays broken (a restored device starts this way).
        let broken = worker.interrupt.needs_reset();
        let running = Running {
            w: worker,
            stop_evt: stop_evt.try_clone()?,
            stop: stop.clone(),
            pause: pause.clone(),
            buf: AlignedBuf::new(IO_CHUNK),
            broken,
            rejects: Rejects::default(),
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || running.run())?;
        Ok(Self {
            stop_evt,
            stop,
            pause,
            thread: Some(thread),
        })
    }

    fn wake(&self) {
        if let Err(e) = self.stop_evt.write(1) {
            log::error!("virtio-blk: cannot wake the worker: {e}");
        }
    }

    /// Stops the thread after the request in progress and waits for it.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.pause.release();
        self.wake();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("virtio-blk: the worker thread panicked");
            }
        }
    }

    /// For a snapshot: the worker finishes the request in progress and parks; returns where
    /// its queue stands. It takes nothing more from the ring until [`WorkerHandle::release`].
    pub fn park(&self) -> Result<QueuePosition, String> {
        let p = self.pause.request(|| self.wake())?;
        p.first()
            .copied()
            .ok_or_else(|| "the disk worker reported no queue".to_string())
    }

    /// Lets a parked worker go on.
    pub fn release(&self) {
        self.pause.release();
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Running {
    fn run(mut self) {
        sandbox::seccomp::apply(sandbox::seccomp::ThreadKind::Blk);
        self.serve();
    }

    fn serve(&mut self) {
        // Requests made available before the device started.
        self.process_queue();
        let mut fds = [
            libc::pollfd {
                fd: self.w.queue_evt.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.stop_evt.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        while !self.stop.load(Ordering::SeqCst) {
            // SAFETY: `fds` is a valid array of two pollfd for the duration of the call and
            // both descriptors are owned by `self`, which outlives it.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("virtio-blk {}: poll failed: {e}", self.w.slot.index);
                return;
            }
            if fds[1].revents != 0 {
                let _ = self.stop_evt.read();
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                if self.pause.requested() {
                    self.pause.park(vec![QueuePosition::of(&self.w.queue)]);
                    // Anything the driver queued meanwhile is served now.
                    self.process_queue();
                }
                continue;
            }
            if fds[0].revents & libc::POLLIN != 0 {
                // EAGAIN only if another reader raced us; nothing to do then.
                let _ = self.w.queue_evt.read();
                self.process_queue();
            } else if fds[0].revents != 0 {
                log::error!("virtio-blk {}: queue eventfd failed", self.w.slot.index);
                return;
            }
        }
    }

    /// The driver broke the queue itself: stop serving it until a device reset.
    fn mark_broken(&mut self, why: &dyn std::fmt::Display) {
        let device = format_args!("virtio-blk {}", self.w.slot.index);
        let interrupt = Some(&*self.w.interrupt);
        faults::mark_broken(&mut self.broken, interrupt, &device, "the queue", why);
    }

    /// Serves every available chain, then interrupts the guest if it asked to be.
    fn process_queue(&mut self) {
        if self.broken {
            return;
        }
        let mut used = false;
        loop {
            if let Err(e) = self.w.queue.disable_notification(&self.w.mem) {
                return self.mark_broken(&e);
            }
            loop {
                // A stop or a park waits for the request in progress only.
                if self.stop.load(Ordering::SeqCst) || self.pause.requested() {
                    return;
                }
                let chain = match self.w.queue.iter(&self.w.mem) {
                    Ok(mut avail) => avail.next(),
                    Err(e) => return self.mark_broken(&e),
                };
                let Some(chain) = chain else { break };
                let head = chain.head_index();
                let len = serve(
                    chain,
                    &self.w.mem,
                    &self.w.slot,
                    &mut self.buf,
                    &mut self.rejects,
                );
                if let Err(e) = self.w.queue.add_used(&self.w.mem, head, len) {
                    return self.mark_broken(&e);
                }
                used = true;
            }
            match self.w.queue.enable_notification(&self.w.mem) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => return self.mark_broken(&e),
            }
        }
        if used {
            match self.w.queue.needs_notification(&self.w.mem) {
                Ok(true) => {
                    if let Err(e) = self.w.interrupt.trigger(InterruptKind::UsedBuffer) {
                        log::error!("virtio-blk {}: cannot interrupt: {e}", self.w.slot.index);
                    }
                }
                Ok(false) => {}
                Err(e) => self.mark_broken(&e),
            }
        }
    }
}

/// Parses and executes one chain; returns the used length (bytes written into the chain).
fn serve(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    slot: &Slot,
    buf: &mut AlignedBuf,
    rejects: &mut Rejects,
) -> u32 {
    let max_descs = usize::from(super::QUEUE_SIZE);
    match parse(chain, mem, max_descs) {
        Ok(req) => {
            let outcome = {
                let disk = lock(&slot.disk);
                execute(&req, mem, disk.as_ref(), buf)
            };
            if mem.write_obj(outcome.status, req.status).is_err() {
                return 0;
            }
            outcome.written + 1
        }
        Err(rejected) => {
            let what = format_args!("virtio-blk {}: bad request", slot.index);
            rejects.log(&what, &rejected.error);
            match rejected.status {
                Some(addr) if mem.write_obj(S_IOERR, addr).is_ok() => 1,
                _ => 0,
            }
        }
    }
}

#[cfg(test)]
mod tests;
