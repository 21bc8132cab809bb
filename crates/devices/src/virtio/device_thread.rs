//! A device's own thread (the console's, vsock's): the state the device and the thread share
//! under one lock, the eventfd that tells the thread the state changed, and the handle that
//! stops and joins the thread.

use crate::bus::lock;
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// The state a device thread serves.
pub(crate) trait ThreadState: Send + 'static {
    /// Asks the thread to return (it looks at its state after every wake-up).
    fn request_stop(&mut self);
}

/// What a device and its thread share.
pub(crate) struct Shared<S> {
    pub state: Mutex<S>,
    /// Tells the thread that `state` changed (activation, reset, snapshot, stop).
    pub wake: EventFd,
    /// The thread's name (`console`, `vsock`), for it and for messages.
    name: &'static str,
}

impl<S> Shared<S> {
    pub fn new(name: &'static str, state: S) -> io::Result<Self> {
        Ok(Self {
            state: Mutex::new(state),
            wake: EventFd::new(EFD_NONBLOCK)?,
            name,
        })
    }

    pub fn wake(&self) {
        if let Err(e) = self.wake.write(1) {
            log::error!("virtio-{0}: cannot wake the {0} thread: {e}", self.name);
        }
    }
}

/// The running thread; dropping it stops the thread.
pub(crate) struct ThreadHandle<S: ThreadState> {
    shared: Arc<Shared<S>>,
    thread: Option<JoinHandle<()>>,
}

impl<S: ThreadState> ThreadHandle<S> {
    /// Starts `run` on a thread named after `shared`.
    pub fn spawn(shared: Arc<Shared<S>>, run: impl FnOnce() + Send + 'static) -> io::Result<Self> {
        let thread = std::thread::Builder::new()
            .name(shared.name.into())
            .spawn(run)?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it to return.
    pub fn stop(&mut self) {
        lock(&self.shared.state).request_stop();
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("virtio-{0}: the {0} thread panicked", self.shared.name);
            }
        }
    }
}

impl<S: ThreadState> Drop for ThreadHandle<S> {
    fn drop(&mut self) {
        self.stop();
    }
}
