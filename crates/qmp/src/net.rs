//! NIC hot-plug commands: `netdev_add` as StratoVirt documents it (`{"id":..,"ifname":..}`)
//! and as QEMU takes it (`{"type":"tap","id":..,"ifname"|"fd"|"fds":..,"vhost":..}`),
//! `netdev_del`, and QEMU's descriptor passing: `getfd` names a descriptor the client sent
//! with SCM_RIGHTS, `closefd` forgets it, and `netdev_add`'s `fd` / `vhostfd` name it (or give
//! a descriptor number the VMM already has). `device_add` and `device_del` are shared with the
//! disks (`block.rs`).

use serde::Deserialize;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};

use crate::dispatch::{Context, Dispatcher};
use crate::error::QmpError;
use crate::schema::Empty;

/// `true`/`false`, or QEMU's `"on"`/`"off"` (what command-line habits send).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Switch {
    Bool(bool),
    Word(String),
}

impl Switch {
    fn value(&self, name: &str) -> Result<bool, QmpError> {
        match self {
            Switch::Bool(b) => Ok(*b),
            Switch::Word(w) => match w.as_str() {
                "on" | "true" | "yes" => Ok(true),
                "off" | "false" | "no" => Ok(false),
                _ => Err(QmpError::generic(format!(
                    "Parameter '{name}' expects 'on' or 'off'"
                ))),
            },
        }
    }
}

/// Arguments of `netdev_add`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetdevAddArguments {
    pub id: String,
    /// `"tap"` (the only backend); the seeds leave it out.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The TAP's interface name.
    #[serde(default)]
    pub ifname: Option<String>,
    /// A `getfd` name, or a descriptor number the VMM has.
    #[serde(default)]
    pub fd: Option<String>,
    /// The same, for multi-queue TAPs (one queue is supported: one descriptor).
    #[serde(default)]
    pub fds: Option<String>,
    #[serde(default)]
    pub vhost: Option<Switch>,
    #[serde(default)]
    pub vhostfd: Option<String>,
    #[serde(default)]
    pub vhostfds: Option<String>,
    /// Accepted when `"no"` (no helper scripts are ever run).
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub downscript: Option<String>,
    /// Accepted when 1.
    #[serde(default)]
    pub queues: Option<u64>,
}

/// Where `netdev_add` gets its TAP.
#[derive(Debug)]
pub enum NetdevTap {
    Name(String),
    Fd(OwnedFd),
}

/// `netdev_add` with its descriptors resolved.
#[derive(Debug)]
pub struct NetdevSpec {
    pub id: String,
    pub tap: NetdevTap,
    pub vhost: bool,
    pub vhost_fd: Option<OwnedFd>,
}

/// Arguments of `netdev_del`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetdevDelArguments {
    pub id: String,
}

/// Arguments of `getfd` and `closefd`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdNameArguments {
    pub fdname: String,
}

/// The `device_add` drivers of virtio-net.
pub const NET_DRIVERS: [&str; 2] = ["virtio-net-mmio", "virtio-net-device"];

/// The descriptors one QMP client has sent (SCM_RIGHTS) and named (`getfd`). They are closed
/// when the client goes away, unless a command took them.
#[derive(Debug, Default)]
pub struct ClientFds {
    /// Received and not yet named, oldest first.
    received: Vec<OwnedFd>,
    named: Vec<(String, OwnedFd)>,
}

/// Most descriptors a client may leave unnamed.
const MAX_RECEIVED: usize = 16;

impl ClientFds {
    /// Descriptors that arrived with the client's last bytes.
    pub fn push_received(&mut self, fds: Vec<OwnedFd>) {
        self.received.extend(fds);
        // A client that keeps sending descriptors it never names does not keep them open.
        let extra = self.received.len().saturating_sub(MAX_RECEIVED);
        self.received.drain(..extra);
    }

    /// `getfd`: names the oldest received descriptor (replacing one of the same name).
    pub fn getfd(&mut self, name: &str) -> Result<(), QmpError> {
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(QmpError::generic(
                "Parameter 'fdname' must not be empty or start with a digit",
            ));
        }
        if self.received.is_empty() {
            return Err(QmpError::generic(
                "No file descriptor supplied via SCM_RIGHTS",
            ));
        }
        let fd = self.received.remove(0);
        self.named.retain(|(n, _)| n != name);
        self.named.push((name.to_string(), fd));
        Ok(())
    }

    /// `closefd`.
    pub fn closefd(&mut self, name: &str) -> Result<(), QmpError> {
        let before = self.named.len();
        self.named.retain(|(n, _)| n != name);
        if self.named.len() == before {
            return Err(QmpError::generic(format!(
                "File descriptor named '{name}' not found"
            )));
        }
        Ok(())
    }

    /// Takes the descriptor `param` names: a `getfd` name, or a number the VMM already has.
    fn take(&mut self, what: &str, param: &str) -> Result<OwnedFd, QmpError> {
        if let Ok(n) = param.parse::<RawFd>() {
            return crate::net::inherited(what, n);
        }
        match self.named.iter().position(|(n, _)| n == param) {
            Some(i) => Ok(self.named.remove(i).1),
            None => Err(QmpError::generic(format!(
                "{what}: file descriptor named '{param}' not found (send it with getfd first)"
            ))),
        }
    }
}

/// Descriptor `n` of this process, taken over for a `netdev_add`.
fn inherited(what: &str, n: RawFd) -> Result<OwnedFd, QmpError> {
    // The VMM's own standard streams are never a TAP.
    // SAFETY: F_GETFD only reads the descriptor's flags.
    if n < 3 || unsafe { libc::fcntl(n, libc::F_GETFD) } < 0 {
        return Err(QmpError::generic(format!(
            "{what}: descriptor {n} is not open in the VMM"
        )));
    }
    // SAFETY: the client names a descriptor the VMM was given for this purpose; from here it
    // belongs to the netdev (and is closed with it).
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(n) })
}

fn one(what: &str, list: &str) -> Result<String, QmpError> {
    if list.contains(':') {
        return Err(QmpError::generic(format!(
            "Parameter '{what}' gives several queues; one is supported (one descriptor)"
        )));
    }
    Ok(list.to_string())
}

impl NetdevAddArguments {
    /// Checks the arguments and takes the descriptors they name from `fds`.
    pub fn resolve(&self, fds: &mut ClientFds) -> Result<NetdevSpec, QmpError> {
        if self.id.is_empty() {
            return Err(QmpError::generic("Parameter 'id' must not be empty"));
        }
        if let Some(k) = self.kind.as_deref() {
            if k != "tap" {
                return Err(QmpError::generic(format!(
                    "Parameter 'type' expects 'tap', not '{k}' (the only netdev type)"
                )));
            }
        }
        for (name, v) in [("script", &self.script), ("downscript", &self.downscript)] {
            if let Some(v) = v.as_deref() {
                if v != "no" && !v.is_empty() {
                    return Err(QmpError::generic(format!(
                        "Parameter '{name}' expects 'no': helper scripts are not run"
                    )));
                }
            }
        }
        if self.queues.is_some_and(|q| q != 1) {
            return Err(QmpError::generic(
                "Parameter 'queues' expects 1 (one queue pair is supported)",
            ));
        }
        let fd_param = match (&self.fd, &self.fds) {
            (Some(_), Some(_)) => {
                return Err(QmpError::generic("Give 'fd' or 'fds', not both"));
            }
            (Some(f), None) => Some(f.clone()),
            (None, Some(f)) => Some(one("fds", f)?),
            (None, None) => None,
        };
        let vhost = match &self.vhost {
            Some(v) => v.value("vhost")?,
            None => false,
        };
        let vhost_param = match (&self.vhostfd, &self.vhostfds) {
            (Some(_), Some(_)) => {
                return Err(QmpError::generic("Give 'vhostfd' or 'vhostfds', not both"));
            }
            (Some(f), None) => Some(f.clone()),
            (None, Some(f)) => Some(one("vhostfds", f)?),
            (None, None) => None,
        };
        if vhost_param.is_some() && !vhost {
            return Err(QmpError::generic("Parameter 'vhostfd' needs 'vhost': true"));
        }
        match (&self.ifname, &fd_param) {
            (Some(_), Some(_)) => {
                return Err(QmpError::generic(
                    "Give the TAP once: 'ifname' or 'fd', not both",
                ))
            }
            (None, None) => return Err(QmpError::generic("Parameter 'ifname' is missing")),
            (Some(n), None) if n.is_empty() => {
                return Err(QmpError::generic("Parameter 'ifname' must not be empty"))
            }
            _ => {}
        }
        // Descriptors last: a refused command takes none of them.
        let tap = match (&self.ifname, fd_param) {
            (Some(n), _) => NetdevTap::Name(n.clone()),
            (None, Some(p)) => NetdevTap::Fd(fds.take("fd", &p)?),
            (None, None) => unreachable!("checked above"),
        };
        let vhost_fd = match vhost_param {
            Some(p) => match fds.take("vhostfd", &p) {
                Ok(f) => Some(f),
                Err(e) => {
                    // Give a named TAP descriptor back rather than close it.
                    if let (NetdevTap::Fd(f), Some(name)) = (tap, self.fd.as_ref()) {
                        if name.parse::<RawFd>().is_err() {
                            fds.named.push((name.clone(), f));
                        } else {
                            let _ = f.into_raw_fd();
                        }
                    }
                    return Err(e);
                }
            },
            None => None,
        };
        Ok(NetdevSpec {
            id: self.id.clone(),
            tap,
            vhost,
            vhost_fd,
        })
    }
}

fn netdev_add(cx: &Context<'_>, args: NetdevAddArguments) -> Result<Empty, QmpError> {
    let spec = cx.with_fds(|fds| args.resolve(fds))?;
    cx.vm.netdev_add(spec)?;
    Ok(Empty {})
}

fn netdev_del(cx: &Context<'_>, args: NetdevDelArguments) -> Result<Empty, QmpError> {
    cx.vm.netdev_del(&args.id)?;
    Ok(Empty {})
}

fn getfd(cx: &Context<'_>, args: FdNameArguments) -> Result<Empty, QmpError> {
    cx.with_fds(|fds| fds.getfd(&args.fdname))?;
    Ok(Empty {})
}

fn closefd(cx: &Context<'_>, args: FdNameArguments) -> Result<Empty, QmpError> {
    cx.with_fds(|fds| fds.closefd(&args.fdname))?;
    Ok(Empty {})
}

/// Registers the NIC commands.
pub(crate) fn register(d: &mut Dispatcher) {
    d.register("netdev_add", netdev_add);
    d.register("netdev_del", netdev_del);
    d.register("getfd", getfd);
    d.register("closefd", closefd);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse_arguments;
    use serde_json::{json, Value};
    use std::os::fd::AsRawFd;

    fn args(v: Value) -> Result<NetdevAddArguments, QmpError> {
        parse_arguments(v.as_object().unwrap())
    }

    fn pipe_fd() -> OwnedFd {
        let (r, _w) = std::io::pipe().unwrap();
        r.into()
    }

    #[test]
    fn the_seeds_and_qemus_forms_parse() {
        let a = args(json!({"id": "net-0", "ifname": "tap0"})).unwrap();
        let spec = a.resolve(&mut ClientFds::default()).unwrap();
        assert!(matches!(&spec.tap, NetdevTap::Name(n) if n == "tap0"));
        assert!(!spec.vhost);
        let a = args(
            json!({"type": "tap", "id": "n1", "ifname": "tap1", "vhost": true,
            "script": "no", "downscript": "no", "queues": 1}),
        )
        .unwrap();
        assert!(a.resolve(&mut ClientFds::default()).unwrap().vhost);
        let a = args(json!({"type": "tap", "id": "n1", "ifname": "tap1", "vhost": "on"})).unwrap();
        assert!(a.resolve(&mut ClientFds::default()).unwrap().vhost);
        let e = args(json!({"id": "n", "ifname": "t", "mac": "x"})).unwrap_err();
        assert_eq!(e.desc, "Parameter 'mac' is unexpected");
    }

    #[test]
    fn getfd_names_what_came_with_scm_rights_and_netdev_add_takes_it() {
        let mut fds = ClientFds::default();
        assert_eq!(
            fds.getfd("tapfd").unwrap_err().desc,
            "No file descriptor supplied via SCM_RIGHTS"
        );
        let f = pipe_fd();
        let raw = f.as_raw_fd();
        fds.push_received(vec![f]);
        fds.getfd("tapfd").unwrap();
        let a = args(json!({"type": "tap", "id": "n", "fd": "tapfd"})).unwrap();
        let spec = a.resolve(&mut fds).unwrap();
        assert!(matches!(&spec.tap, NetdevTap::Fd(f) if f.as_raw_fd() == raw));
        // Taken: a second use finds nothing.
        let e = a.resolve(&mut fds).unwrap_err();
        assert_eq!(
            e.desc,
            "fd: file descriptor named 'tapfd' not found (send it with getfd first)"
        );
        assert_eq!(
            fds.closefd("tapfd").unwrap_err().desc,
            "File descriptor named 'tapfd' not found"
        );
        fds.push_received(vec![pipe_fd()]);
        fds.getfd("other").unwrap();
        fds.closefd("other").unwrap();
        assert!(fds.getfd("1abc").is_err());
    }

    #[test]
    fn bad_combinations_take_no_descriptor() {
        let mut fds = ClientFds::default();
        fds.push_received(vec![pipe_fd()]);
        fds.getfd("t").unwrap();
        for (v, want) in [
            (json!({"id": "n"}), "Parameter 'ifname' is missing"),
            (
                json!({"id": "", "ifname": "t"}),
                "Parameter 'id' must not be empty",
            ),
            (
                json!({"id": "n", "ifname": ""}),
                "Parameter 'ifname' must not be empty",
            ),
            (
                json!({"id": "n", "type": "user", "ifname": "t"}),
                "Parameter 'type' expects 'tap', not 'user' (the only netdev type)",
            ),
            (
                json!({"id": "n", "ifname": "t", "fd": "t"}),
                "Give the TAP once: 'ifname' or 'fd', not both",
            ),
            (
                json!({"id": "n", "fd": "t", "fds": "t"}),
                "Give 'fd' or 'fds', not both",
            ),
            (
                json!({"id": "n", "fds": "t:u"}),
                "Parameter 'fds' gives several queues; one is supported (one descriptor)",
            ),
            (
                json!({"id": "n", "fd": "t", "vhostfd": "v"}),
                "Parameter 'vhostfd' needs 'vhost': true",
            ),
            (
                json!({"id": "n", "ifname": "t", "vhost": "maybe"}),
                "Parameter 'vhost' expects 'on' or 'off'",
            ),
            (
                json!({"id": "n", "ifname": "t", "script": "/etc/qemu-ifup"}),
                "Parameter 'script' expects 'no': helper scripts are not run",
            ),
            (
                json!({"id": "n", "ifname": "t", "queues": 4}),
                "Parameter 'queues' expects 1 (one queue pair is supported)",
            ),
            (
                json!({"id": "n", "fd": "2"}),
                "fd: descriptor 2 is not open in the VMM",
            ),
        ] {
            let e = args(v.clone()).unwrap().resolve(&mut fds).unwrap_err();
            assert_eq!(e.desc, want, "{v}");
        }
        // A vhostfd that is missing gives the named TAP descriptor back.
        let e = args(json!({"id": "n", "fd": "t", "vhost": true, "vhostfd": "v"}))
            .unwrap()
            .resolve(&mut fds)
            .unwrap_err();
        assert!(e.desc.contains("'v' not found"), "{}", e.desc);
        fds.closefd("t").unwrap();
    }
}
