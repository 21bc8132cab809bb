//! The machine as QMP sees it: `VmControl` over a running VM.

use crate::migration::Migration;
use config::{CpuTopology, VmConfig};
use devices::virtio::balloon::BalloonHandle;
use devices::virtio::net::{TapSource, VhostSource};
use machine::hotplug::{slot_from_addr, BootDevice, DeviceProps, Hotplug, HotplugError};
use machine::{SlotKind, SlotTable, VmExitReason, VmHandle, VmRunState};
use qmp::balloon::{BalloonInfo, GuestStatsInfo};
use qmp::block::{BlockdevAddArguments, DeviceAddArguments, BLOCK_DRIVERS};
use qmp::net::{NetdevSpec, NetdevTap, NET_DRIVERS};
use qmp::{CpuInfo, CpuInstanceProperties, HotpluggableCpu, QmpError, RunState, StatusInfo};
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The least memory `balloon` leaves a guest: the smallest a VM may be configured with.
const BALLOON_FLOOR: u64 = config::limits::MIN_MEM_SIZE;
/// How long `query-balloon-stats` waits for the guest's fresh report.
const STATS_TIMEOUT: Duration = Duration::from_secs(1);

pub struct VmController {
    vm: Arc<VmHandle>,
    vcpus: u8,
    topology: CpuTopology,
    hotplug: Hotplug,
    migration: Arc<Migration>,
    balloon: Option<BalloonHandle>,
}

impl VmController {
    /// Also starts the `migrate` thread: call it before the main thread installs its seccomp
    /// filter (see migration.rs).
    pub fn new(
        vm: Arc<VmHandle>,
        cfg: &VmConfig,
        (slots, boot_ids): (SlotTable, Vec<Option<BootDevice>>),
        balloon: Option<BalloonHandle>,
    ) -> Result<Self, String> {
        Ok(VmController {
            vm,
            vcpus: cfg.machine.vcpus,
            topology: cfg.machine.topology(),
            hotplug: Hotplug::new(slots, &boot_ids),
            migration: Migration::start_thread(cfg.incoming.is_some())?,
            balloon,
        })
    }

    fn balloon_handle(&self) -> Result<&BalloonHandle, QmpError> {
        self.balloon
            .as_ref()
            .ok_or_else(|| QmpError::device_not_active("balloon"))
    }

    /// Nothing may change the VM while a snapshot of it is being written.
    fn not_while_saving(&self, what: &str) -> Result<(), QmpError> {
        if self.migration.in_progress() {
            return Err(QmpError::generic(format!(
                "cannot {what} while a snapshot is being written"
            )));
        }
        Ok(())
    }
}

fn parse_mac(m: &str) -> Result<[u8; 6], QmpError> {
    let mac =
        config::parse_mac(m).map_err(|e| QmpError::generic(format!("Parameter 'mac': {e}")))?;
    if mac[0] & 1 != 0 || mac == [0; 6] {
        return Err(QmpError::generic(format!(
            "Parameter 'mac': {m} is not a unicast address"
        )));
    }
    Ok(mac)
}

fn qmp_error(e: HotplugError) -> QmpError {
    // The client gets the reason; the operator's log keeps it too.
    log::warn!("hot-plug request refused: {e}");
    match e {
        HotplugError::NotFound(m) => QmpError::new(qmp::ErrorClass::DeviceNotFound, m),
        HotplugError::Invalid(m) => QmpError::generic(m),
    }
}

/// Where vCPU `index` sits in the topology (by default StratoVirt's microvm layout: every vCPU
/// is its own socket), as the guest's CPUID and MP table say too.
fn props(topology: &CpuTopology, index: u32) -> CpuInstanceProperties {
    let p = topology.position(index);
    CpuInstanceProperties {
        core_id: p.core,
        socket_id: p.socket,
        thread_id: p.thread,
    }
}

impl qmp::VmControl for VmController {
    fn query_status(&self) -> StatusInfo {
        StatusInfo::new(match self.vm.run_state() {
            VmRunState::Running => RunState::Running,
            VmRunState::Paused => RunState::Paused,
            VmRunState::GuestPanicked => RunState::GuestPanicked,
        })
    }

    fn stop(&self) -> Result<(), QmpError> {
        self.vm.pause().map_err(QmpError::generic)?;
        log::info!("VM paused");
        Ok(())
    }

    fn cont(&self) -> Result<(), QmpError> {
        self.not_while_saving("resume the VM")?;
        self.vm.resume().map_err(QmpError::generic)?;
        log::info!("VM resumed");
        Ok(())
    }

    fn query_cpus(&self) -> Vec<CpuInfo> {
        self.vm
            .cpus()
            .into_iter()
            .map(|c| {
                let i = u32::from(c.id);
                CpuInfo::new(
                    i,
                    props(&self.topology, i),
                    c.halted,
                    i64::from(c.thread_id),
                )
            })
            .collect()
    }

    fn query_hotpluggable_cpus(&self) -> Vec<HotpluggableCpu> {
        (0..u32::from(self.vcpus))
            .map(|i| HotpluggableCpu::new(i, props(&self.topology, i), true))
            .collect()
    }

    fn quit(&self) {
        self.vm.request_exit(VmExitReason::HostQmpQuit);
    }

    fn blockdev_add(&self, args: &BlockdevAddArguments) -> Result<(), QmpError> {
        self.hotplug
            .add_node(
                &args.node_name,
                Path::new(&args.file.filename),
                args.read_only.unwrap_or(false),
                args.direct(),
            )
            .map_err(qmp_error)
    }

    fn blockdev_del(&self, node_name: &str) -> Result<(), QmpError> {
        self.hotplug.del_node(node_name).map_err(qmp_error)
    }

    fn device_add(&self, args: &DeviceAddArguments) -> Result<(), QmpError> {
        self.not_while_saving("add a device")?;
        let driver = args.driver.as_str();
        let slot = slot_from_addr(args.addr.as_deref(), args.lun);
        if NET_DRIVERS.contains(&driver) {
            if args.drive.is_some() || args.lun.is_some() {
                return Err(QmpError::generic(format!(
                    "{driver} takes addr and netdev, not drive or lun"
                )));
            }
            let mac = match args.mac.as_deref() {
                Some(m) => Some(parse_mac(m)?),
                None => None,
            };
            let props = DeviceProps { mac };
            return self
                .hotplug
                .attach(
                    SlotKind::Nic,
                    &args.id,
                    args.netdev.as_deref(),
                    slot.map_err(qmp_error)?,
                    &props,
                )
                .map_err(qmp_error);
        }
        if !BLOCK_DRIVERS.contains(&driver) {
            return Err(QmpError::generic(format!(
                "'{}' is not a valid device model name",
                args.driver
            )));
        }
        if args.netdev.is_some() || args.mac.is_some() {
            return Err(QmpError::generic(format!(
                "{driver} takes addr or lun and drive, not netdev or mac"
            )));
        }
        self.hotplug
            .attach(
                SlotKind::Disk,
                &args.id,
                args.drive.as_deref(),
                slot.map_err(qmp_error)?,
                &DeviceProps::default(),
            )
            .map_err(qmp_error)
    }

    fn netdev_add(&self, spec: NetdevSpec) -> Result<(), QmpError> {
        let NetdevSpec {
            id,
            tap,
            vhost,
            vhost_fd,
        } = spec;
        // A passed TAP descriptor becomes the TAP's only on success; it is closed otherwise.
        let (source, tap_fd): (TapSource, Option<OwnedFd>) = match tap {
            NetdevTap::Name(n) => (TapSource::Name(n), None),
            NetdevTap::Fd(f) => (TapSource::Fd(f.as_raw_fd()), Some(f)),
        };
        let vhost = match (vhost, vhost_fd) {
            (false, _) => None,
            (true, None) => Some(VhostSource::Open),
            (true, Some(f)) => Some(VhostSource::Fd(f)),
        };
        let r = self.hotplug.add_netdev(&id, source, vhost);
        if r.is_ok() {
            if let Some(f) = tap_fd {
                // The TAP owns the descriptor now.
                let _ = f.into_raw_fd();
            }
        }
        r.map_err(qmp_error)
    }

    fn netdev_del(&self, id: &str) -> Result<(), QmpError> {
        self.hotplug
            .del_backend(SlotKind::Nic, id)
            .map_err(qmp_error)
    }

    fn device_del(&self, id: &str) -> Result<(), QmpError> {
        self.not_while_saving("remove a device")?;
        match self.hotplug.detach(id).map_err(qmp_error)? {
            Some(_) => Ok(()),
            None => Err(QmpError::device_not_found(id)),
        }
    }

    fn migrate(&self, uri: &str) -> Result<qmp::MigrateStarted, QmpError> {
        self.migration
            .start(&self.vm, uri, self.hotplug.slot_ids())
            .inspect_err(|e| log::warn!("migrate refused: {}", e.desc))
    }

    fn query_migrate(&self) -> qmp::MigrationInfo {
        self.migration.info()
    }

    fn balloon(&self, value: i64) -> Result<(), QmpError> {
        let b = self.balloon_handle()?;
        if value <= 0 {
            return Err(QmpError::invalid_parameter_value(
                "value",
                "a size in bytes above zero",
            ));
        }
        let asked = value as u64;
        if asked < BALLOON_FLOOR {
            return Err(QmpError::generic(format!(
                "balloon: {asked} bytes is below {BALLOON_FLOOR} bytes ({} MiB), the least memory a VM may have",
                BALLOON_FLOOR >> 20
            )));
        }
        let target = b.set_target(asked);
        log::info!(
            "balloon: target {} MiB of {} MiB{}",
            target >> 20,
            b.ram_bytes() >> 20,
            if asked > b.ram_bytes() {
                " (more was asked: the boot memory is the most)"
            } else {
                ""
            }
        );
        Ok(())
    }

    fn query_balloon(&self) -> Result<BalloonInfo, QmpError> {
        Ok(BalloonInfo {
            actual: self.balloon_handle()?.actual_bytes(),
        })
    }

    fn query_balloon_stats(&self) -> Result<GuestStatsInfo, QmpError> {
        let s = self
            .balloon_handle()?
            .statistics(STATS_TIMEOUT)
            .map_err(|e| QmpError::generic(e.to_string()))?;
        Ok(GuestStatsInfo {
            stats: s
                .named()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
            last_update: s.received_unix(),
        })
    }
}
