//! QMP `migrate` to a file: the snapshot job. The command checks what it can at once (the URI,
//! the devices, the directory) and pauses a running VM; the writing happens on the `migrate`
//! thread, so QMP keeps answering, and `query-migrate` follows it.
//!
//! The thread is started with the VM, before any seccomp filter is installed, and waits for
//! jobs: a thread inherits its creator's filter, so one started by the QMP thread could only
//! do what QMP may, and the QMP thread's list would have to hold everything a save does.

use machine::snapshot::save::dir_of_uri;
use machine::VmHandle;
use qmp::{MigrateStarted, MigrationInfo, MigrationStatus, QmpError};
use snapshot::SnapshotDir;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

struct Job {
    vm: Arc<VmHandle>,
    dir: SnapshotDir,
    slot_ids: Vec<Option<String>>,
}

/// Where the last snapshot stands, and the thread that writes them.
pub struct Migration {
    info: Mutex<MigrationInfo>,
    jobs: Mutex<Option<Sender<Job>>>,
}

impl Migration {
    /// `completed` for a VM restored from a snapshot (as QEMU's `-incoming` reports), `none`
    /// otherwise. Starts the `migrate` thread.
    pub fn start_thread(restored: bool) -> Result<Arc<Self>, String> {
        let m = Arc::new(Migration {
            info: Mutex::new(MigrationInfo::new(if restored {
                MigrationStatus::Completed
            } else {
                MigrationStatus::None
            })),
            jobs: Mutex::new(None),
        });
        let (tx, rx) = channel::<Job>();
        let job_state = m.clone();
        std::thread::Builder::new()
            .name("migrate".into())
            .spawn(move || {
                sandbox::seccomp::apply(sandbox::seccomp::ThreadKind::Migrate);
                while let Ok(job) = rx.recv() {
                    job_state.run(job);
                }
            })
            .map_err(|e| format!("cannot start the migrate thread: {e}"))?;
        *m.jobs.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        Ok(m)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MigrationInfo> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn info(&self) -> MigrationInfo {
        self.lock().clone()
    }

    /// Whether a snapshot is being written (the VM must then stay as it is).
    pub fn in_progress(&self) -> bool {
        matches!(
            self.lock().status,
            MigrationStatus::Setup | MigrationStatus::Active
        )
    }

    fn set(&self, status: MigrationStatus, error: Option<String>) {
        *self.lock() = MigrationInfo {
            status,
            error_desc: error,
        };
    }

    fn run(&self, job: Job) {
        let Job { vm, dir, slot_ids } = job;
        let saved = dir
            .prepare()
            .map_err(|e| e.to_string())
            .and_then(|()| vm.save_snapshot(&dir, &slot_ids));
        match saved {
            Ok(r) => {
                log::info!(
                    "snapshot written to {} in {} ms: {} bytes of state, {} bytes of memory ({} pages read)",
                    dir.path.display(),
                    r.elapsed.as_millis(),
                    r.state_bytes,
                    r.memory_bytes_written,
                    r.pages_read
                );
                self.set(MigrationStatus::Completed, None);
            }
            Err(e) => {
                log::error!("snapshot to {} failed: {e}", dir.path.display());
                self.set(MigrationStatus::Failed, Some(e));
            }
        }
    }

    /// `migrate {"uri": uri}`; `slot_ids` are the slots' device ids now.
    pub fn start(
        &self,
        vm: &Arc<VmHandle>,
        uri: &str,
        slot_ids: Vec<Option<String>>,
    ) -> Result<MigrateStarted, QmpError> {
        if self.in_progress() {
            return Err(QmpError::generic("a snapshot is already being written"));
        }
        // Refusals change nothing: they come before the VM is paused or a file is written.
        let dir = dir_of_uri(uri).map_err(QmpError::generic)?;
        vm.check_snapshot_supported().map_err(QmpError::generic)?;
        dir.check_free()
            .map_err(|e| QmpError::generic(e.to_string()))?;
        self.set(MigrationStatus::Setup, None);
        let paused_it = if vm.is_running() {
            if let Err(e) = vm.pause() {
                self.set(MigrationStatus::Failed, Some(e.clone()));
                return Err(QmpError::generic(e));
            }
            log::info!("VM paused for a snapshot");
            MigrateStarted::PausedIt
        } else {
            MigrateStarted::WasPaused
        };
        self.set(MigrationStatus::Active, None);
        let job = Job {
            vm: vm.clone(),
            dir,
            slot_ids,
        };
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|tx| tx.send(job).is_ok())
            .unwrap_or(false);
        if !sent {
            let msg = "the migrate thread is gone".to_string();
            self.set(MigrationStatus::Failed, Some(msg.clone()));
            return Err(QmpError::generic(msg));
        }
        Ok(paused_it)
    }
}
