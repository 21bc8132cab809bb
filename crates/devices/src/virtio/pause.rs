//! Parking a device's worker thread for a snapshot: the worker finishes the request in
//! progress, reports where its queues stand and waits, taking nothing from the rings, until the
//! snapshot is written and it is released. Any device with a worker thread uses it the same
//! way (see virtio-blk's worker).

use super::QueuePosition;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How long a save waits for a worker to reach a point between requests.
const PARK_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    parked: Option<Vec<QueuePosition>>,
}

/// Shared by a device (which requests and releases) and its worker (which parks).
#[derive(Default)]
pub struct WorkerPause {
    requested: AtomicBool,
    state: Mutex<State>,
    cond: Condvar,
}

impl WorkerPause {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Worker side: whether it should stop taking requests and park (checked between them).
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Worker side: reports its queues' positions and blocks until released.
    pub fn park(&self, positions: Vec<QueuePosition>) {
        let mut g = self.lock();
        g.parked = Some(positions);
        self.cond.notify_all();
        while self.requested() {
            g = self.cond.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g.parked = None;
    }

    /// Device side: asks the worker to park (`wake` makes a waiting worker notice) and waits
    /// for its queues' positions.
    pub fn request(&self, wake: impl FnOnce()) -> Result<Vec<QueuePosition>, String> {
        self.requested.store(true, Ordering::SeqCst);
        wake();
        let g = self.lock();
        let (g, timeout) = self
            .cond
            .wait_timeout_while(g, PARK_TIMEOUT, |s| s.parked.is_none())
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            drop(g);
            self.release();
            return Err("the device's worker did not stop taking requests in time".into());
        }
        Ok(g.parked.clone().unwrap_or_default())
    }

    /// Device side: lets a parked worker go on.
    pub fn release(&self) {
        self.requested.store(false, Ordering::SeqCst);
        let _g = self.lock();
        self.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_worker_parks_between_requests_until_released() {
        let p = Arc::new(WorkerPause::default());
        let done = Arc::new(AtomicBool::new(false));
        let (wp, wd) = (p.clone(), done.clone());
        let t = std::thread::spawn(move || {
            let mut served = 0u16;
            while !wd.load(Ordering::SeqCst) {
                if wp.requested() {
                    wp.park(vec![QueuePosition {
                        next_avail: served,
                        next_used: served,
                    }]);
                }
                served = served.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(1));
            }
            served
        });
        std::thread::sleep(Duration::from_millis(10));
        let pos = p.request(|| {}).unwrap();
        assert_eq!(pos.len(), 1);
        std::thread::sleep(Duration::from_millis(20));
        let again = p.request(|| {}).unwrap();
        assert_eq!(pos, again, "nothing was served while parked");
        p.release();
        std::thread::sleep(Duration::from_millis(10));
        done.store(true, Ordering::SeqCst);
        assert!(t.join().unwrap() > pos[0].next_avail);
    }
}
