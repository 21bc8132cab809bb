//! Disk hot-plug commands as StratoVirt documents them: `blockdev-add`, `device_add`,
//! `device_del` (with the `DEVICE_DELETED` event) and `blockdev-del`; `device_add` and
//! `device_del` serve NICs too (`net.rs` has `netdev_add`). Argument types accept what
//! the seeds show and what Kata Containers sends (`"driver":"raw"`, `"file":{"aio":...}`,
//! `device_add` with `"drive"` and `"romfile":""`).

use serde::Deserialize;
use serde_json::json;

use crate::dispatch::{Context, Dispatcher};
use crate::error::QmpError;
use crate::schema::Empty;

/// `file` member of `blockdev-add`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockdevFile {
    /// Must be `"file"`.
    pub driver: String,
    /// Host path of the image.
    pub filename: String,
    /// Kata passes `"native"` or `"threads"`; accepted and ignored.
    #[serde(default)]
    pub aio: Option<String>,
}

/// `cache` member of `blockdev-add`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockdevCache {
    /// O_DIRECT; StratoVirt's default is on.
    #[serde(default)]
    pub direct: Option<bool>,
    /// Accepted; flushes are always honoured.
    #[serde(rename = "no-flush", default)]
    pub no_flush: Option<bool>,
}

/// Arguments of `blockdev-add`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockdevAddArguments {
    #[serde(rename = "node-name")]
    pub node_name: String,
    pub file: BlockdevFile,
    #[serde(default)]
    pub cache: Option<BlockdevCache>,
    #[serde(rename = "read-only", default)]
    pub read_only: Option<bool>,
    /// `"raw"` (Kata) or `"file"`.
    #[serde(default)]
    pub driver: Option<String>,
}

impl BlockdevAddArguments {
    /// O_DIRECT requested (default on, as in StratoVirt).
    pub fn direct(&self) -> bool {
        self.cache.as_ref().and_then(|c| c.direct).unwrap_or(true)
    }
}

/// Arguments of `device_add`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceAddArguments {
    pub id: String,
    pub driver: String,
    /// Slot: `"0x0"` is vda.
    #[serde(default)]
    pub addr: Option<String>,
    /// Replaces `addr`: lun 0 is vdb.
    #[serde(default)]
    pub lun: Option<u64>,
    /// The `blockdev-add` node (Kata); must equal `id`.
    #[serde(default)]
    pub drive: Option<String>,
    /// The `netdev_add` id (QEMU); must equal `id`.
    #[serde(default)]
    pub netdev: Option<String>,
    /// A NIC's MAC address (QEMU).
    #[serde(default)]
    pub mac: Option<String>,
    /// Kata passes `""`; accepted and ignored.
    #[serde(default)]
    pub romfile: Option<String>,
}

/// Arguments of `device_del`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceDelArguments {
    pub id: String,
}

/// Arguments of `blockdev-del`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockdevDelArguments {
    #[serde(rename = "node-name")]
    pub node_name: String,
}

/// The `device_add` drivers of virtio-blk.
pub const BLOCK_DRIVERS: [&str; 2] = ["virtio-blk-mmio", "virtio-blk-device"];

fn blockdev_add(cx: &Context<'_>, args: BlockdevAddArguments) -> Result<Empty, QmpError> {
    if args.file.driver != "file" {
        return Err(QmpError::generic(format!(
            "Parameter 'file.driver' expects 'file', not '{}'",
            args.file.driver
        )));
    }
    if let Some(d) = args.driver.as_deref() {
        if d != "raw" && d != "file" {
            return Err(QmpError::generic(format!(
                "Parameter 'driver' expects 'raw' or 'file', not '{d}'"
            )));
        }
    }
    cx.vm.blockdev_add(&args)?;
    Ok(Empty {})
}

fn blockdev_del(cx: &Context<'_>, args: BlockdevDelArguments) -> Result<Empty, QmpError> {
    cx.vm.blockdev_del(&args.node_name)?;
    Ok(Empty {})
}

fn device_add(cx: &Context<'_>, args: DeviceAddArguments) -> Result<Empty, QmpError> {
    if args.id.is_empty() {
        return Err(QmpError::generic("Parameter 'id' must not be empty"));
    }
    cx.vm.device_add(&args)?;
    Ok(Empty {})
}

fn device_del(cx: &Context<'_>, args: DeviceDelArguments) -> Result<Empty, QmpError> {
    cx.vm.device_del(&args.id)?;
    cx.events.emit(
        "DEVICE_DELETED",
        json!({"device": args.id, "path": args.id}),
    );
    Ok(Empty {})
}

/// Registers the hot-plug commands.
pub(crate) fn register(d: &mut Dispatcher) {
    d.register("blockdev-add", blockdev_add);
    d.register("blockdev-del", blockdev_del);
    d.register("device_add", device_add);
    d.register("device_del", device_del);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse_arguments;
    use serde_json::Value;

    fn map(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn seed_and_kata_arguments_parse() {
        let a: BlockdevAddArguments = parse_arguments(&map(json!({"node-name": "drive-0",
            "file": {"driver": "file", "filename": "/path/to/block"},
            "cache": {"direct": true}, "read-only": false})))
        .unwrap();
        assert_eq!(a.node_name, "drive-0");
        assert!(a.direct());
        let k: BlockdevAddArguments = parse_arguments(&map(json!({"driver": "raw",
            "node-name": "drive-1", "file": {"driver": "file", "filename": "/x", "aio": "native"},
            "cache": {"direct": false, "no-flush": false}, "read-only": true})))
        .unwrap();
        assert!(!k.direct());
        assert_eq!(k.read_only, Some(true));
        let d: DeviceAddArguments = parse_arguments(&map(json!({"id": "drive-0",
            "driver": "virtio-blk-mmio", "addr": "0x1"})))
        .unwrap();
        assert_eq!(d.addr.as_deref(), Some("0x1"));
        let d: DeviceAddArguments = parse_arguments(&map(json!({"id": "d", "driver":
            "virtio-blk-mmio", "drive": "d", "romfile": "", "lun": 0})))
        .unwrap();
        assert_eq!(d.lun, Some(0));
    }

    #[test]
    fn bad_arguments_are_rejected() {
        let e =
            parse_arguments::<BlockdevAddArguments>(&map(json!({"node-name": "x"}))).unwrap_err();
        assert!(e.desc.contains("file"), "{}", e.desc);
        let e = parse_arguments::<DeviceAddArguments>(&map(json!({"id": "x",
            "driver": "virtio-blk-mmio", "bogus": 1})))
        .unwrap_err();
        assert!(e.desc.contains("bogus"), "{}", e.desc);
        let e = parse_arguments::<DeviceDelArguments>(&map(json!({"id": 5}))).unwrap_err();
        assert!(e.desc.contains("id"), "{}", e.desc);
    }
}
