//! The `-config` JSON file (seed 004, table 2). Keys are exactly the seed's;
//! any other key, at any level, is refused with its dotted path.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::builder::Builder;
use crate::error::{one_line, quote, ConfigError};
use crate::mac::parse_mac;
use crate::model::*;
use crate::origin::Origin;

const TOP: &[&str] = &[
    "boot-source",
    "machine-config",
    "drive",
    "net",
    "console",
    "vsock",
    "balloon",
    "serial",
];
const BOOT: &[&str] = &["kernel_image_path", "boot_args", "initrd_fs_path"];
const MACHINE: &[&str] = &["name", "vcpu_count", "mem_size", "omit_vm_memory"];
const DRIVE: &[&str] = &[
    "drive_id",
    "path_on_host",
    "read_only",
    "direct",
    "serial_num",
];
const NET: &[&str] = &["iface_id", "host_dev_name", "mac"];
const CONSOLE: &[&str] = &["console_id", "socket_path"];
const VSOCK: &[&str] = &["vsock_id", "guest_cid", "uds_path"];
const BALLOON: &[&str] = &["deflate_on_oom", "free_page_reporting"];
const SERIAL: &[&str] = &["stdio"];

/// Reads a file into a string (the real one is `std::fs::read_to_string`).
pub(crate) type Reader = fn(&Path) -> std::io::Result<String>;

/// A JSON value, described for an error message.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {}", quote(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// One JSON object at `path`, its keys already checked against `allowed`.
struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(path: String, v: &'a Value, allowed: &[&str]) -> Result<Self, ConfigError> {
        let Value::Object(map) = v else {
            return Err(ConfigError::invalid(
                path,
                format!("expected an object, got {}", describe(v)),
            ));
        };
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let key = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            return Err(ConfigError::UnknownKey {
                option: "-config".into(),
                key: quote(&key),
                allowed: allowed.join(", "),
            });
        }
        Ok(Obj { path, map })
    }

    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.path)
    }

    /// The value at `k`; `null` counts as absent.
    fn get(&self, k: &str, required: bool) -> Result<Option<&'a Value>, ConfigError> {
        match self.map.get(k) {
            Some(Value::Null) | None if required => {
                Err(ConfigError::invalid(self.key(k), "required key is missing"))
            }
            Some(Value::Null) | None => Ok(None),
            Some(v) => Ok(Some(v)),
        }
    }

    fn wrong(&self, k: &str, want: &str, v: &Value) -> ConfigError {
        ConfigError::invalid(self.key(k), format!("expected {want}, got {}", describe(v)))
    }

    fn string(&self, k: &str) -> Result<Option<String>, ConfigError> {
        match self.get(k, false)? {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.wrong(k, "a string", v)),
            None => Ok(None),
        }
    }

    fn req_string(&self, k: &str) -> Result<String, ConfigError> {
        self.get(k, true)?;
        Ok(self.string(k)?.unwrap_or_default())
    }

    fn u64(&self, k: &str) -> Result<u64, ConfigError> {
        match self.get(k, true)? {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| self.wrong(k, "a non-negative integer", v)),
            None => unreachable!("required"),
        }
    }

    fn bool(&self, k: &str, required: bool) -> Result<Option<bool>, ConfigError> {
        match self.get(k, required)? {
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(k, "true or false", v)),
            None => Ok(None),
        }
    }

    /// A sub-object; `null` counts as absent.
    fn section(&self, k: &str, allowed: &[&str]) -> Result<Option<Obj<'a>>, ConfigError> {
        match self.map.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Obj::new(k.to_string(), v, allowed).map(Some),
        }
    }

    /// A list of objects named `k[0]`, `k[1]`, ...
    fn list(&self, k: &str, allowed: &[&str]) -> Result<Vec<Obj<'a>>, ConfigError> {
        match self.map.get(k) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| Obj::new(format!("{k}[{i}]"), v, allowed))
                .collect(),
            Some(v) => Err(ConfigError::invalid(
                k,
                format!("expected a list, got {}", describe(v)),
            )),
        }
    }
}

/// Parse the text of a `-config` file into a builder whose values remember
/// their JSON keys. `file` names the file in syntax errors.
pub(crate) fn parse(text: &str, file: &str) -> Result<Builder, ConfigError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ConfigError::ConfigFile {
        path: file.to_string(),
        reason: one_line(&format!("invalid JSON: {e}")),
    })?;
    if !value.is_object() {
        return Err(ConfigError::ConfigFile {
            path: file.to_string(),
            reason: format!("expected a JSON object, got {}", describe(&value)),
        });
    }
    let top = Obj::new(String::new(), &value, TOP)?;
    let mut b = Builder::default();

    if let Some(o) = top.section("boot-source", BOOT)? {
        let origin = Origin::json(&o.path);
        b.kernel = Some((o.req_string("kernel_image_path")?.into(), origin.clone()));
        b.append = Some((o.req_string("boot_args")?, origin.clone()));
        b.initrd = o.string("initrd_fs_path")?.map(|p| (p.into(), origin));
    }
    if let Some(o) = top.section("machine-config", MACHINE)? {
        let origin = Origin::json(&o.path);
        b.name = Some((o.req_string("name")?, origin.clone()));
        b.vcpus = Some((o.u64("vcpu_count")?, origin.clone()));
        b.mem = Some((o.u64("mem_size")?, origin.clone()));
        b.omit_vm_memory = o.bool("omit_vm_memory", false)?.map(|v| (v, origin));
    }
    for o in top.list("drive", DRIVE)? {
        let drive = DriveConfig {
            id: o.req_string("drive_id")?,
            path: o.req_string("path_on_host")?.into(),
            read_only: o.bool("read_only", false)?.unwrap_or(false),
            direct: o.bool("direct", false)?.unwrap_or(true),
            serial: o.string("serial_num")?,
        };
        b.drives.push((drive, Origin::json(&o.path)));
    }
    for o in top.list("net", NET)? {
        let mac = match o.string("mac")? {
            Some(m) => Some(parse_mac(&m).map_err(|e| ConfigError::invalid(o.key("mac"), e))?),
            None => None,
        };
        let net = NetConfig {
            id: o.req_string("iface_id")?,
            host_dev_name: o.req_string("host_dev_name")?,
            mac,
            ..Default::default()
        };
        b.nets.push((net, Origin::json(&o.path)));
    }
    if let Some(o) = top.section("console", CONSOLE)? {
        let console = ConsoleConfig {
            id: o.req_string("console_id")?,
            socket_path: o.req_string("socket_path")?.into(),
        };
        b.console = Some((console, Origin::json(&o.path)));
    }
    if let Some(o) = top.section("vsock", VSOCK)? {
        let vsock = VsockConfig {
            id: o.req_string("vsock_id")?,
            guest_cid: o.u64("guest_cid")?,
            uds_path: o.string("uds_path")?.map(PathBuf::from),
            vhost_fd: None,
        };
        b.vsock = Some((vsock, Origin::json(&o.path)));
    }
    if let Some(o) = top.section("balloon", BALLOON)? {
        let balloon = BalloonConfig {
            id: None,
            deflate_on_oom: o.bool("deflate_on_oom", false)?.unwrap_or(false),
            free_page_reporting: o.bool("free_page_reporting", false)?.unwrap_or(false),
        };
        b.balloon = Some((balloon, Origin::json(&o.path)));
    }
    if let Some(o) = top.section("serial", SERIAL)? {
        let stdio = o.bool("stdio", true)?.unwrap_or(false);
        b.serial = Some((stdio, Origin::json(&o.path)));
    }
    Ok(b)
}

/// Read and parse a `-config` file.
pub(crate) fn load(path: &str, read: Reader) -> Result<Builder, ConfigError> {
    let text = read(Path::new(path)).map_err(|e| ConfigError::ConfigFile {
        path: path.to_string(),
        reason: one_line(&format!("cannot read: {e}")),
    })?;
    parse(&text, path)
}

#[cfg(test)]
pub(crate) mod tests;
