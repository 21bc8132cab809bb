//! The memory balloon as StratoVirt documents it: `balloon {"value": bytes}` sets the guest's
//! memory (a value above the boot memory means the boot memory), `query-balloon` answers
//! `{"actual": bytes}`, and `BALLOON_CHANGED {"actual": bytes}` follows the guest's changes.
//! Without a balloon device both commands answer `DeviceNotActive`.
//!
//! The guest's statistics come from an extra command, `query-balloon-stats`, so the seeds'
//! `query-balloon` reply stays as it is; its reply has the shape and names of QEMU's
//! `guest-stats` property: `{"stats": {"stat-free-memory": N, ...}, "last-update": SECONDS}`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::dispatch::{Context, Dispatcher};
use crate::error::QmpError;
use crate::schema::{Empty, NoArguments};

/// The event upstream StratoVirt sends when the guest's memory changes (QEMU's is
/// `BALLOON_CHANGE`); data `{"actual": bytes}`.
pub const BALLOON_CHANGED: &str = "BALLOON_CHANGED";

/// Arguments of `balloon` (QEMU's `value`: a signed integer, so a negative one gets its reason
/// instead of a type error).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonArguments {
    pub value: i64,
}

/// `query-balloon`'s reply, and the data of `BALLOON_CHANGED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BalloonInfo {
    /// The guest's memory in bytes: the boot memory less what is in the balloon.
    pub actual: u64,
}

/// `query-balloon-stats`'s reply: the guest's last report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GuestStatsInfo {
    /// Each statistic the guest reported, by QEMU's name (`stat-free-memory`, ...).
    pub stats: BTreeMap<String, u64>,
    /// When the report arrived, in seconds since the Unix epoch.
    #[serde(rename = "last-update")]
    pub last_update: u64,
}

fn balloon(cx: &Context<'_>, a: BalloonArguments) -> Result<Empty, QmpError> {
    cx.vm.balloon(a.value)?;
    Ok(Empty {})
}

fn query_balloon(cx: &Context<'_>, _: NoArguments) -> Result<BalloonInfo, QmpError> {
    cx.vm.query_balloon()
}

fn query_balloon_stats(cx: &Context<'_>, _: NoArguments) -> Result<GuestStatsInfo, QmpError> {
    cx.vm.query_balloon_stats()
}

pub(crate) fn register(d: &mut Dispatcher) {
    d.register("balloon", balloon);
    d.register("query-balloon", query_balloon);
    d.register("query-balloon-stats", query_balloon_stats);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_have_the_seeds_shape() {
        assert_eq!(
            serde_json::to_string(&BalloonInfo { actual: 2147483648 }).unwrap(),
            r#"{"actual":2147483648}"#
        );
        let s = GuestStatsInfo {
            stats: [("stat-free-memory".to_string(), 5)].into(),
            last_update: 17,
        };
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            json!({"stats": {"stat-free-memory": 5}, "last-update": 17})
        );
        let parse = |v: serde_json::Value| {
            crate::args::parse_arguments::<BalloonArguments>(v.as_object().unwrap())
        };
        assert_eq!(parse(json!({"value": -5})).unwrap().value, -5);
        assert_eq!(
            parse(json!({})).unwrap_err().desc,
            "Parameter 'value' is missing"
        );
        assert_eq!(
            parse(json!({"value": "1G"})).unwrap_err().desc,
            "Invalid parameter type for 'value', expected: integer"
        );
        assert_eq!(
            parse(json!({"value": 1, "target": 2})).unwrap_err().desc,
            "Parameter 'target' is unexpected"
        );
    }
}
