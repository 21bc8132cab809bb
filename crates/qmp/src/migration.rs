//! Snapshots as StratoVirt documents them: `migrate` with a `file:` URI writes one (pausing a
//! running VM first, with a `STOP` event; it stays paused), `query-migrate` reports how it
//! went: none, setup, active, completed or failed (with the reason in `error-desc`).

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::dispatch::{Context, Dispatcher};
use crate::error::QmpError;
use crate::schema::{Empty, NoArguments};

/// Arguments of `migrate` (QEMU's optional flags are accepted; none changes a file snapshot).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateArguments {
    pub uri: String,
    #[serde(default)]
    pub detach: Option<bool>,
    #[serde(default)]
    pub blk: Option<bool>,
    #[serde(default)]
    pub inc: Option<bool>,
}

/// `query-migrate`'s statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationStatus {
    None,
    Setup,
    Active,
    Completed,
    Failed,
}

/// `query-migrate`'s reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MigrationInfo {
    pub status: MigrationStatus,
    #[serde(rename = "error-desc", skip_serializing_if = "Option::is_none")]
    pub error_desc: Option<String>,
}

impl MigrationInfo {
    pub fn new(status: MigrationStatus) -> Self {
        MigrationInfo {
            status,
            error_desc: None,
        }
    }
}

/// What `migrate` did to the VM's run state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrateStarted {
    /// The VM was running and is now paused (the dispatcher sends `STOP`).
    PausedIt,
    WasPaused,
}

fn migrate(cx: &Context<'_>, a: MigrateArguments) -> Result<Empty, QmpError> {
    if cx.vm.migrate(&a.uri)? == MigrateStarted::PausedIt {
        cx.events.emit("STOP", json!({}));
    }
    Ok(Empty {})
}

fn query_migrate(cx: &Context<'_>, _: NoArguments) -> Result<MigrationInfo, QmpError> {
    Ok(cx.vm.query_migrate())
}

pub(crate) fn register(d: &mut Dispatcher) {
    d.register("migrate", migrate);
    d.register("query-migrate", query_migrate);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_have_the_seeds_shape() {
        assert_eq!(
            serde_json::to_value(MigrationInfo::new(MigrationStatus::Completed)).unwrap(),
            json!({"status": "completed"})
        );
        let failed = MigrationInfo {
            status: MigrationStatus::Failed,
            error_desc: Some("disk full".into()),
        };
        assert_eq!(
            serde_json::to_value(failed).unwrap(),
            json!({"status": "failed", "error-desc": "disk full"})
        );
        let a: MigrateArguments =
            crate::args::parse_arguments(json!({"uri": "file:/tmp/t"}).as_object().unwrap())
                .unwrap();
        assert_eq!(a.uri, "file:/tmp/t");
        assert!(crate::args::parse_arguments::<MigrateArguments>(
            json!({"uri": "file:/tmp/t", "speed": 1})
                .as_object()
                .unwrap()
        )
        .is_err());
    }
}
