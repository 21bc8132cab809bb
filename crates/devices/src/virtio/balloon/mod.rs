//! virtio-balloon (virtio 1.x section 5.5): the host asks the guest to give up memory, and the
//! pages the guest hands over go back to the host.
//!
//! The machine sets a target through a [`BalloonHandle`] (QMP `balloon`); the device shows it
//! as `num_pages` and raises a configuration interrupt; the driver inflates (gives page frames
//! on the inflate queue) or deflates (takes them back on the deflate queue) and writes how many
//! it holds into `actual`, which QMP `query-balloon` reports and `BALLOON_CHANGED` announces.
//! With the features configured, the driver may also deflate on its own when the guest runs
//! out of memory (DEFLATE_ON_OOM) and report free pages (PAGE_REPORTING), which go back to the
//! host too; the statistics queue carries the guest's memory statistics.
//!
//! Files: `config.rs` (configuration space, features, queue order), `request.rs` (reading the
//! requests out of their chains), `pages.rs` (guest RAM, the balloon's pages, `madvise`),
//! `stats.rs` (the statistics), `worker.rs` (the `balloon` thread), `oddity.rs` (what a driver
//! got wrong, logged once), `persist.rs` (snapshot state).

mod config;
mod oddity;
mod pages;
mod persist;
mod request;
mod stats;
#[cfg(test)]
mod test_utils;
mod worker;

pub use config::{feature, offered_features, PAGE_SIZE};
pub use persist::BalloonState;
pub use stats::GuestStats;

use self::config::{config_space, queue_roles, written_actual, QueueRole, PAGE_SHIFT};
use self::pages::GuestPages;
use self::worker::{Activation, Command, Link, WorkerHandle};
use super::{
    device_type, read_config_bytes, ActivateError, Interrupt, InterruptKind, VirtioDevice,
};
use crate::bus::lock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Maximum (and offered) size of each queue.
pub const QUEUE_SIZE: u16 = 256;

/// Receives the guest's memory size in bytes whenever the driver's `actual` changes (at most
/// once a second; see the worker).
pub type ChangeSink = Arc<dyn Fn(u64) + Send + Sync>;

/// The statistics as the guest last reported them.
#[derive(Default)]
struct StatsState {
    latest: Option<GuestStats>,
    /// Reports received so far.
    reports: u64,
    /// The driver started the device with a statistics queue.
    queue_live: bool,
}

/// What the device, its thread and its handles share.
pub(crate) struct Shared {
    /// Guest RAM in 4 KiB pages.
    ram_pages: u32,
    /// `num_pages`: how many pages the device wants in the balloon.
    target: AtomicU32,
    /// `actual`: how many the driver says it has in the balloon.
    actual: AtomicU32,
    /// ConfigGeneration: bumped when the target changes.
    generation: AtomicU32,
    /// The running device's interrupt, for configuration changes; None until DRIVER_OK.
    interrupt: Mutex<Option<Arc<Interrupt>>>,
    pages: Mutex<GuestPages>,
    stats: Mutex<StatsState>,
    stats_cond: Condvar,
    sink: Mutex<Option<ChangeSink>>,
}

impl Shared {
    /// The guest's memory as the driver reports it: RAM less what is in the balloon.
    fn actual_bytes(&self) -> u64 {
        let actual = self.actual.load(Ordering::SeqCst).min(self.ram_pages);
        u64::from(self.ram_pages - actual) << PAGE_SHIFT
    }

    /// Stores the driver's `actual`; whether it changed.
    fn set_actual(&self, pages: u32) -> bool {
        self.actual.swap(pages, Ordering::SeqCst) != pages
    }

    fn notify_change(&self, actual_bytes: u64) {
        log::info!(
            "balloon: the guest's memory is {} MiB ({} MiB in the balloon)",
            actual_bytes >> 20,
            ((u64::from(self.ram_pages) << PAGE_SHIFT) - actual_bytes) >> 20
        );
        let sink = lock(&self.sink).clone();
        if let Some(sink) = sink {
            sink(actual_bytes);
        }
    }

    fn stats_received(&self, s: GuestStats) {
        let mut st = lock(&self.stats);
        st.latest = Some(s);
        st.reports += 1;
        self.stats_cond.notify_all();
    }
}

/// Why no statistics could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    #[error("the guest's balloon driver has not started a statistics queue")]
    NoQueue,
    #[error("the guest's balloon driver has not reported statistics (waited {0} ms)")]
    NoReport(u128),
}

/// The machine's and QMP's handle on the balloon: the target, the guest's `actual`, the
/// statistics and the change notices. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct BalloonHandle {
    shared: Arc<Shared>,
    link: Arc<Link>,
}

impl BalloonHandle {
    /// Guest RAM in bytes (the boot memory).
    pub fn ram_bytes(&self) -> u64 {
        u64::from(self.shared.ram_pages) << PAGE_SHIFT
    }

    /// Asks the guest to shrink (or grow) to `bytes` of memory: the target is RAM less the
    /// balloon; a value above RAM means RAM (an empty balloon). Returns the target in bytes
    /// (rounded down to a page). The driver is told at once if it runs, else when it starts.
    pub fn set_target(&self, bytes: u64) -> u64 {
        let want = (bytes >> PAGE_SHIFT).min(u64::from(self.shared.ram_pages)) as u32;
        let num_pages = self.shared.ram_pages - want;
        if self.shared.target.swap(num_pages, Ordering::SeqCst) != num_pages {
            self.shared.generation.fetch_add(1, Ordering::SeqCst);
            if let Some(irq) = lock(&self.shared.interrupt).as_ref() {
                if let Err(e) = irq.trigger(InterruptKind::ConfigChange) {
                    log::error!("virtio-balloon: cannot raise the config-change interrupt: {e}");
                }
            }
        }
        u64::from(want) << PAGE_SHIFT
    }

    /// The guest's memory now, as its driver reports it (QMP `query-balloon`'s `actual`).
    pub fn actual_bytes(&self) -> u64 {
        self.shared.actual_bytes()
    }

    /// The target set last, in bytes.
    pub fn target_bytes(&self) -> u64 {
        let t = self.shared.target.load(Ordering::SeqCst);
        u64::from(self.shared.ram_pages - t.min(self.shared.ram_pages)) << PAGE_SHIFT
    }

    /// Pages the device has taken from the guest and released (its own count, whatever the
    /// driver writes in `actual`).
    pub fn pages_in_balloon(&self) -> u64 {
        lock(&self.shared.pages).in_balloon()
    }

    /// Calls `sink` with the guest's memory in bytes when the driver's `actual` changes.
    pub fn set_change_sink(&self, sink: ChangeSink) {
        *lock(&self.shared.sink) = Some(sink);
    }

    /// Fresh statistics: asks the guest for a new report and waits up to `timeout` for it.
    /// Without one in time, the last report (its time says how old it is).
    pub fn statistics(&self, timeout: Duration) -> Result<GuestStats, StatsError> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.stats);
        if !st.queue_live {
            return st.latest.clone().ok_or(StatsError::NoQueue);
        }
        let want = st.reports + 1;
        drop(st);
        self.link.send(Command::RefreshStats);
        st = lock(&self.shared.stats);
        while st.reports < want && st.queue_live {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .stats_cond
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.latest
            .clone()
            .ok_or(StatsError::NoReport(timeout.as_millis()))
    }
}

/// A virtio-balloon device.
pub struct Balloon {
    shared: Arc<Shared>,
    features: u64,
    acked: u64,
    queue_sizes: Vec<u16>,
    worker: WorkerHandle,
}

impl Balloon {
    /// A balloon over guest RAM `mem`, offering DEFLATE_ON_OOM and PAGE_REPORTING as asked.
    /// Starts the `balloon` thread: call it during the machine's setup, before seccomp
    /// filters are installed.
    pub fn new(
        mem: &GuestMemoryMmap,
        deflate_on_oom: bool,
        free_page_reporting: bool,
    ) -> std::io::Result<Self> {
        let pages = GuestPages::new(mem);
        let ram_pages = u32::try_from(pages.total()).map_err(|_| {
            std::io::Error::other("guest RAM is too large for 32-bit balloon page counts")
        })?;
        let shared = Arc::new(Shared {
            ram_pages,
            target: AtomicU32::new(0),
            actual: AtomicU32::new(0),
            generation: AtomicU32::new(0),
            interrupt: Mutex::new(None),
            pages: Mutex::new(pages),
            stats: Mutex::new(StatsState::default()),
            stats_cond: Condvar::new(),
            sink: Mutex::new(None),
        });
        let features = offered_features(deflate_on_oom, free_page_reporting);
        let queues = queue_roles(features).len();
        Ok(Balloon {
            worker: WorkerHandle::spawn(shared.clone())?,
            shared,
            features,
            acked: 0,
            queue_sizes: vec![QUEUE_SIZE; queues],
        })
    }

    pub fn handle(&self) -> BalloonHandle {
        BalloonHandle {
            shared: self.shared.clone(),
            link: self.worker.link().clone(),
        }
    }

    /// Whether the balloon offers DEFLATE_ON_OOM.
    pub fn deflate_on_oom(&self) -> bool {
        self.features & (1 << feature::DEFLATE_ON_OOM) != 0
    }

    /// Whether the balloon offers free page reporting.
    pub fn free_page_reporting(&self) -> bool {
        self.features & (1 << feature::PAGE_REPORTING) != 0
    }
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        device_type::BALLOON
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn avail_features(&self) -> u64 {
        self.features
    }

    fn queues_in_use(&self, acked: u64) -> usize {
        queue_roles(acked).len()
    }

    fn ack_features(&mut self, features: u64) {
        self.acked = features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let space = config_space(
            self.shared.target.load(Ordering::SeqCst),
            self.shared.actual.load(Ordering::SeqCst),
        );
        read_config_bytes(&space, offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let old = self.shared.actual.load(Ordering::SeqCst);
        match written_actual(old, offset, data) {
            Some(new) => {
                if self.shared.set_actual(new) {
                    self.worker.link().send(Command::ActualWritten);
                }
            }
            None => log::debug!(
                "virtio-balloon: ignoring a {}-byte config write at {offset}",
                data.len()
            ),
        }
    }

    fn config_generation(&self) -> u32 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        interrupt: Arc<Interrupt>,
        queues: Vec<Queue>,
        queue_evts: Vec<EventFd>,
    ) -> Result<(), ActivateError> {
        let roles = queue_roles(self.acked);
        if queues.len() != roles.len() || queue_evts.len() != roles.len() {
            return Err(ActivateError::QueueCount {
                expected: roles.len(),
                got: queues.len().min(queue_evts.len()),
            });
        }
        let queues: Vec<_> = roles
            .into_iter()
            .zip(queues)
            .zip(queue_evts)
            .map(|((r, q), e)| (r, q, e))
            .collect();
        let has_stats = queues.iter().any(|(r, _, _)| *r == QueueRole::Stats);
        lock(&self.shared.stats).queue_live = has_stats;
        *lock(&self.shared.interrupt) = Some(interrupt.clone());
        let sent = self
            .worker
            .link()
            .send(Command::Activate(Box::new(Activation {
                mem,
                interrupt,
                queues,
            })));
        if !sent {
            *lock(&self.shared.interrupt) = None;
            lock(&self.shared.stats).queue_live = false;
            return Err(ActivateError::Other("the balloon thread is gone".into()));
        }
        Ok(())
    }

    fn reset(&mut self) {
        *lock(&self.shared.interrupt) = None;
        lock(&self.shared.stats).queue_live = false;
        self.shared.stats_cond.notify_all();
        self.worker.link().reset();
        self.acked = 0;
    }

    fn can_save(&self) -> Result<(), String> {
        Err(
            "a VM with a balloon device cannot be snapshotted (as in StratoVirt, snapshots \
             exclude the balloon; start the VM without -device virtio-balloon-device to take one)"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests;
