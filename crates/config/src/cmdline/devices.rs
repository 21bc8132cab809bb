//! `-drive`, `-netdev`, `-chardev` and `-device`, old and current spellings.
//!
//! Every `-drive` is a virtio-blk disk, every `-netdev` a virtio-net NIC and
//! every `-chardev` a virtio-console, as in the older StratoVirt spelling; a
//! `-device virtio-blk-device,drive=ID` (current spelling) only has to name a
//! defined one, and may add a serial number or MAC address.

use super::suboptions::{First, SubOpts};
use crate::builder::Builder;
use crate::error::{quote, ConfigError};
use crate::mac::parse_mac;
use crate::model::*;
use crate::origin::Origin;
use std::path::PathBuf;

/// `id` of a `-device vhost-vsock-device` that names none.
pub(crate) const DEFAULT_VSOCK_ID: &str = "vsock0";

const BLK_DRIVERS: [&str; 2] = ["virtio-blk-device", "virtio-blk-mmio"];
const NET_DRIVERS: [&str; 2] = ["virtio-net-device", "virtio-net-mmio"];
const VSOCK_DRIVERS: [&str; 3] = ["vhost-vsock-device", "vhost-vsock-mmio", "vsock"];
const SERIAL_DRIVERS: [&str; 2] = ["virtio-serial-device", "virtio-serial-mmio"];
const CONSOLE_DRIVER: &str = "virtconsole";
const BALLOON_DRIVERS: [&str; 2] = ["virtio-balloon-device", "virtio-balloon-mmio"];

#[derive(Debug)]
struct Reference {
    /// The id of the `-drive`, `-netdev` or `-chardev` it names.
    target: String,
    serial: Option<String>,
    mac: Option<[u8; 6]>,
    /// The device's own id, where it is kept (NICs).
    id: Option<String>,
    spelling: String,
}

/// Everything device-related on one command line, resolved by [`Devices::apply`].
#[derive(Debug, Default)]
pub(crate) struct Devices {
    drives: Vec<(DriveConfig, String)>,
    netdevs: Vec<(NetConfig, String)>,
    chardevs: Vec<(ConsoleConfig, String)>,
    blk: Vec<Reference>,
    net: Vec<Reference>,
    consoles: Vec<Reference>,
    vsocks: Vec<(VsockConfig, String)>,
    balloons: Vec<(BalloonConfig, String)>,
}

fn required(s: &mut SubOpts, key: &str) -> Result<String, ConfigError> {
    s.take(key)?
        .ok_or_else(|| ConfigError::invalid(s.option(), format!("missing {key}=...")))
}

fn mac(s: &mut SubOpts) -> Result<Option<[u8; 6]>, ConfigError> {
    match s.take("mac")? {
        Some(m) => parse_mac(&m)
            .map(Some)
            .map_err(|e| ConfigError::invalid(s.option(), e)),
        None => Ok(None),
    }
}

/// Only `key=allowed` (or nothing) is accepted.
fn only(s: &mut SubOpts, key: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    match s.take(key)? {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ConfigError::invalid(
            s.option(),
            format!(
                "{key}={} is not supported (supported: {})",
                v.escape_debug(),
                allowed.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

/// A descriptor number (`fd=3`).
fn fd_number(opt: &str, key: &str, v: &str) -> Result<i32, ConfigError> {
    v.parse::<i32>()
        .ok()
        .filter(|n| *n >= 0 && !v.starts_with('+'))
        .ok_or_else(|| {
            ConfigError::invalid(
                opt,
                format!("{key}={} is not a descriptor number", v.escape_debug()),
            )
        })
}

/// `fds=N`: one queue, so one descriptor (`fds=3:4` asks for two queues).
fn one_fd(opt: &str, key: &str, v: &str) -> Result<i32, ConfigError> {
    if v.contains(':') {
        return Err(ConfigError::invalid(
            opt,
            format!(
                "{key}={} gives several queues; one is supported (one descriptor)",
                v.escape_debug()
            ),
        ));
    }
    fd_number(opt, key, v)
}

impl Devices {
    /// `-drive id=ID,file=PATH[,readonly=..][,direct=..][,serial=..][,if=none][,format=raw]`
    pub(crate) fn drive(&mut self, opt: &str, value: &str) -> Result<(), ConfigError> {
        let mut s = SubOpts::parse(opt, value, First::Auto);
        let file = s.take("file")?;
        let id = s.take("id")?;
        let read_only = s.take_bool("readonly")?.unwrap_or(false);
        let direct = s.take_bool("direct")?.unwrap_or(true);
        let serial = s.take("serial")?;
        only(&mut s, "if", &["none", "virtio"])?;
        only(&mut s, "format", &["raw"])?;
        s.finish()?;
        let file = file.ok_or_else(|| ConfigError::invalid(opt, "missing file=PATH"))?;
        let id = id.ok_or_else(|| ConfigError::invalid(opt, "missing id=..."))?;
        let drive = DriveConfig {
            id,
            path: file.into(),
            read_only,
            direct,
            serial,
        };
        self.drives.push((drive, opt.to_string()));
        Ok(())
    }

    /// `-netdev tap,id=ID,ifname=TAP|fd=N|fds=N[,vhost=on|off][,vhostfd=N][,mac=..]` or the
    /// older `-netdev id=ID,netdev=TAP[,mac=..]`.
    pub(crate) fn netdev(&mut self, opt: &str, value: &str) -> Result<(), ConfigError> {
        let mut s = SubOpts::parse(opt, value, First::Auto);
        if let Some(kind) = s.positional() {
            if kind != "tap" {
                return Err(ConfigError::invalid(
                    opt,
                    format!(
                        "netdev type {} is not supported (supported: tap)",
                        quote(&kind)
                    ),
                ));
            }
        }
        let id = required(&mut s, "id")?;
        let ifname = match (s.take("ifname")?, s.take("netdev")?) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    opt,
                    "give the tap device once (ifname=TAP)",
                ))
            }
            (a, b) => a.or(b),
        };
        let fd = match (s.take("fd")?, s.take("fds")?) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(opt, "give fd= or fds=, not both"))
            }
            (Some(v), None) => Some(fd_number(opt, "fd", &v)?),
            (None, Some(v)) => Some(one_fd(opt, "fds", &v)?),
            (None, None) => None,
        };
        let host_dev_name = match (ifname, fd) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    opt,
                    "give the TAP once: ifname=TAP or fd=N, not both",
                ))
            }
            (Some(n), None) => n,
            (None, Some(_)) => String::new(),
            (None, None) => return Err(ConfigError::invalid(opt, "missing ifname=TAP (or fd=N)")),
        };
        let vhost = s.take_bool("vhost")?.unwrap_or(false);
        let vhost_fd = match (s.take("vhostfd")?, s.take("vhostfds")?) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    opt,
                    "give vhostfd= or vhostfds=, not both",
                ))
            }
            (Some(v), None) => Some(fd_number(opt, "vhostfd", &v)?),
            (None, Some(v)) => Some(one_fd(opt, "vhostfds", &v)?),
            (None, None) => None,
        };
        let mac = mac(&mut s)?;
        only(&mut s, "script", &["no", ""])?;
        only(&mut s, "downscript", &["no", ""])?;
        only(&mut s, "queues", &["1"])?;
        s.finish()?;
        let net = NetConfig {
            id,
            host_dev_name,
            fd,
            mac,
            vhost,
            vhost_fd,
            ..Default::default()
        };
        self.netdevs.push((net, opt.to_string()));
        Ok(())
    }

    /// `-chardev socket,id=ID,path=PATH,server,nowait` or `-chardev id=ID,path=PATH`.
    pub(crate) fn chardev(&mut self, opt: &str, value: &str) -> Result<(), ConfigError> {
        let mut s = SubOpts::parse(opt, value, First::Auto);
        if let Some(kind) = s.positional() {
            if kind != "socket" {
                return Err(ConfigError::invalid(
                    opt,
                    format!(
                        "chardev backend {} is not supported (supported: socket)",
                        quote(&kind)
                    ),
                ));
            }
        }
        let id = required(&mut s, "id")?;
        let path = required(&mut s, "path")?;
        server_flags(&mut s)?;
        s.finish()?;
        let console = ConsoleConfig {
            id,
            socket_path: path.into(),
        };
        self.chardevs.push((console, opt.to_string()));
        Ok(())
    }

    /// `-device DRIVER,...`.
    pub(crate) fn device(&mut self, opt: &str, value: &str) -> Result<(), ConfigError> {
        let mut s = SubOpts::parse(opt, value, First::Auto);
        let Some(driver) = s.positional() else {
            return Err(ConfigError::invalid(opt, "missing device driver name"));
        };
        let driver = driver.as_str();
        let spelling = opt.to_string();
        if BLK_DRIVERS.contains(&driver) {
            let target = required(&mut s, "drive")?;
            s.take("id")?;
            let serial = s.take("serial")?;
            s.finish()?;
            self.blk.push(Reference {
                target,
                serial,
                mac: None,
                id: None,
                spelling,
            });
        } else if NET_DRIVERS.contains(&driver) {
            let target = required(&mut s, "netdev")?;
            let id = s.take("id")?;
            let mac = mac(&mut s)?;
            s.finish()?;
            self.net.push(Reference {
                target,
                serial: None,
                mac,
                id,
                spelling,
            });
        } else if driver == CONSOLE_DRIVER {
            let target = required(&mut s, "chardev")?;
            s.take("id")?;
            // The port number: the console is port 0, the only one.
            if let Some(nr) = s.take_u64("nr")? {
                if nr != 0 {
                    return Err(ConfigError::invalid(
                        opt,
                        format!("nr={nr} is not supported (the console is port 0, the only port)"),
                    ));
                }
            }
            s.finish()?;
            self.consoles.push(Reference {
                target,
                serial: None,
                mac: None,
                id: None,
                spelling,
            });
        } else if VSOCK_DRIVERS.contains(&driver) {
            let id = s
                .take("id")?
                .unwrap_or_else(|| DEFAULT_VSOCK_ID.to_string());
            let guest_cid = s
                .take_u64("guest-cid")?
                .ok_or_else(|| ConfigError::invalid(opt, "missing guest-cid=..."))?;
            let vhost_fd = match s.take("vhostfd")? {
                Some(v) => Some(fd_number(opt, "vhostfd", &v)?),
                None => None,
            };
            let uds_path = s.take("uds-path")?.map(PathBuf::from);
            s.finish()?;
            self.vsocks.push((
                VsockConfig {
                    id,
                    guest_cid,
                    uds_path,
                    vhost_fd,
                },
                spelling,
            ));
        } else if BALLOON_DRIVERS.contains(&driver) {
            let id = s.take("id")?;
            let deflate_on_oom = s.take_bool("deflate-on-oom")?.unwrap_or(false);
            let free_page_reporting = s.take_bool("free-page-reporting")?.unwrap_or(false);
            s.finish()?;
            let balloon = BalloonConfig {
                id,
                deflate_on_oom,
                free_page_reporting,
            };
            self.balloons.push((balloon, spelling));
        } else if SERIAL_DRIVERS.contains(&driver) {
            // The virtio-serial transport of a virtconsole: nothing to configure.
            s.take("id")?;
            s.finish()?;
        } else {
            return Err(ConfigError::invalid(
                opt,
                format!(
                    "device {} is not supported (supported: {}, {}, {CONSOLE_DRIVER}, {}, {}, {})",
                    quote(driver),
                    BLK_DRIVERS.join(", "),
                    NET_DRIVERS.join(", "),
                    SERIAL_DRIVERS.join(", "),
                    VSOCK_DRIVERS.join(", "),
                    BALLOON_DRIVERS.join(", "),
                ),
            ));
        }
        Ok(())
    }

    /// Check the references and hand the devices to the builder.
    pub(crate) fn apply(mut self, b: &mut Builder) -> Result<(), ConfigError> {
        let mut claimed = vec![false; self.drives.len()];
        for r in &self.blk {
            let i = find(&self.drives, |d| &d.id, r, "drive", "-drive", &mut claimed)?;
            let drive = &mut self.drives[i].0;
            if let Some(serial) = &r.serial {
                match &drive.serial {
                    Some(old) if old != serial => {
                        return Err(ConfigError::invalid(
                            &r.spelling,
                            format!(
                                "serial {} differs from the -drive serial {}",
                                quote(serial),
                                quote(old)
                            ),
                        ))
                    }
                    _ => drive.serial = Some(serial.clone()),
                }
            }
        }
        let mut claimed = vec![false; self.netdevs.len()];
        for r in &self.net {
            let i = find(
                &self.netdevs,
                |n| &n.id,
                r,
                "netdev",
                "-netdev",
                &mut claimed,
            )?;
            let net = &mut self.netdevs[i].0;
            if let Some(id) = &r.id {
                if *id != net.id {
                    net.device_id = Some(id.clone());
                }
            }
            if let Some(mac) = r.mac {
                match net.mac {
                    Some(old) if old != mac => {
                        return Err(ConfigError::invalid(
                            &r.spelling,
                            "mac differs from the -netdev mac",
                        ))
                    }
                    _ => net.mac = Some(mac),
                }
            }
        }
        if self.consoles.len() > 1 {
            return Err(ConfigError::invalid(
                &self.consoles[1].spelling,
                "only one virtconsole is supported",
            ));
        }
        let mut claimed = vec![false; self.chardevs.len()];
        for r in &self.consoles {
            find(
                &self.chardevs,
                |c| &c.id,
                r,
                "chardev",
                "-chardev",
                &mut claimed,
            )?;
        }
        if self.chardevs.len() > 1 {
            return Err(ConfigError::invalid(
                &self.chardevs[1].1,
                format!("only one console is supported, got {}", self.chardevs.len()),
            ));
        }
        if self.vsocks.len() > 1 {
            return Err(ConfigError::invalid(
                &self.vsocks[1].1,
                "only one vsock device is supported",
            ));
        }
        if self.balloons.len() > 1 {
            return Err(ConfigError::invalid(
                &self.balloons[1].1,
                "only one balloon device is supported",
            ));
        }
        for (drive, spelling) in self.drives {
            b.merge_drive(drive, Origin::Opt(spelling));
        }
        for (net, spelling) in self.netdevs {
            b.merge_net(net, Origin::Opt(spelling));
        }
        if let Some((console, spelling)) = self.chardevs.pop() {
            b.console = Some((console, Origin::Opt(spelling)));
        }
        if let Some((vsock, spelling)) = self.vsocks.pop() {
            b.vsock = Some((vsock, Origin::Opt(spelling)));
        }
        if let Some((balloon, spelling)) = self.balloons.pop() {
            b.balloon = Some((balloon, Origin::Opt(spelling)));
        }
        Ok(())
    }
}

/// The index of the backend `r` names; each backend serves one device.
fn find<T>(
    list: &[(T, String)],
    id: impl Fn(&T) -> &String,
    r: &Reference,
    key: &str,
    backend: &str,
    claimed: &mut [bool],
) -> Result<usize, ConfigError> {
    let Some(i) = list.iter().position(|(t, _)| *id(t) == r.target) else {
        return Err(ConfigError::invalid(
            &r.spelling,
            format!("{key}={} names no {backend}", r.target.escape_debug()),
        ));
    };
    if std::mem::replace(&mut claimed[i], true) {
        return Err(ConfigError::invalid(
            &r.spelling,
            format!(
                "{backend} {} is used by more than one device",
                quote(&r.target)
            ),
        ));
    }
    Ok(i)
}

/// `server`, `server=on`, `nowait`, `wait=off`: the socket is always a
/// server that does not wait for a client, whatever `wait` says.
pub(crate) fn server_flags(s: &mut SubOpts) -> Result<(), ConfigError> {
    if s.take_bool("server")? == Some(false) {
        return Err(ConfigError::invalid(
            s.option(),
            "server=off is not supported (the socket is always a server)",
        ));
    }
    s.take_bool("wait")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(v: &str) -> Result<DriveConfig, String> {
        let mut d = Devices::default();
        d.drive("-drive", v).map_err(|e| e.to_string())?;
        Ok(d.drives.remove(0).0)
    }

    fn apply(d: Devices) -> Result<Builder, String> {
        let mut b = Builder::default();
        d.apply(&mut b).map_err(|e| e.to_string())?;
        Ok(b)
    }

    #[test]
    fn drive_defaults_and_flags() {
        let d = drive("id=rootfs,file=/r.ext4").unwrap();
        assert_eq!(
            d,
            DriveConfig {
                id: "rootfs".into(),
                path: "/r.ext4".into(),
                read_only: false,
                direct: true,
                serial: None
            }
        );
        let d = drive("file=/r,id=r,readonly=on,direct=off,serial=abc,if=none,format=raw").unwrap();
        assert!(d.read_only);
        assert!(!d.direct);
        assert_eq!(d.serial.as_deref(), Some("abc"));
        assert!(
            drive("file=/r,id=r,readonly=true,direct=false")
                .unwrap()
                .read_only
        );
    }

    #[test]
    fn drive_errors() {
        assert_eq!(drive("id=rootfs").unwrap_err(), "-drive: missing file=PATH");
        assert_eq!(drive("file=/r").unwrap_err(), "-drive: missing id=...");
        assert_eq!(
            drive("file=/r,id=r,format=qcow2").unwrap_err(),
            "-drive: format=qcow2 is not supported (supported: raw)"
        );
        assert_eq!(
            drive("file=/r,id=r,if=ide").unwrap_err(),
            "-drive: if=ide is not supported (supported: none, virtio)"
        );
        assert!(drive("file=/r,id=r,cache=none")
            .unwrap_err()
            .starts_with("-drive: unknown key `cache`"));
        assert!(drive("file=/r,id=r,readonly=maybe")
            .unwrap_err()
            .contains("not a boolean"));
    }

    #[test]
    fn netdev_spellings() {
        let mut d = Devices::default();
        d.netdev("-netdev", "tap,id=net0,ifname=tap0").unwrap();
        d.netdev("-netdev", "id=iface_id,netdev=tap1,mac=0e:90:df:9f:a8:88")
            .unwrap();
        let b = apply(d).unwrap();
        let nets: Vec<_> = b.nets.into_iter().map(|(n, _)| n).collect();
        assert_eq!(nets[0].id, "net0");
        assert_eq!(nets[0].host_dev_name, "tap0");
        assert_eq!(nets[0].mac, None);
        assert_eq!(nets[1].id, "iface_id");
        assert_eq!(nets[1].host_dev_name, "tap1");
        assert_eq!(nets[1].mac, Some([0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88]));
    }

    #[test]
    fn netdev_descriptors_and_vhost() {
        let mut d = Devices::default();
        // Kata's spelling, then QEMU's with vhost.
        d.netdev("-netdev", "tap,id=ep0,fds=3").unwrap();
        d.netdev(
            "-netdev",
            "tap,id=net1,ifname=tap1,vhost=on,vhostfd=7,script=no,downscript=no,queues=1",
        )
        .unwrap();
        d.device(
            "-device",
            "virtio-net-device,netdev=ep0,id=ep0,mac=0e:90:df:9f:a8:88",
        )
        .unwrap();
        d.device("-device", "virtio-net-mmio,netdev=net1,id=nic1")
            .unwrap();
        let b = apply(d).unwrap();
        let nets: Vec<_> = b.nets.into_iter().map(|(n, _)| n).collect();
        assert_eq!(nets[0].fd, Some(3));
        assert_eq!(nets[0].host_dev_name, "");
        assert!(!nets[0].vhost);
        assert_eq!(nets[0].device_id, None, "the same id twice is one id");
        assert_eq!(nets[0].mac, Some([0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88]));
        assert_eq!(nets[1].host_dev_name, "tap1");
        assert!(nets[1].vhost);
        assert_eq!(nets[1].vhost_fd, Some(7));
        assert_eq!(nets[1].device_id.as_deref(), Some("nic1"));
        assert_eq!(nets[1].device_id(), "nic1");
        let mut d = Devices::default();
        d.netdev("-netdev", "tap,id=a,fd=5,vhost=off").unwrap();
        let nets: Vec<_> = apply(d).unwrap().nets.into_iter().map(|(n, _)| n).collect();
        assert_eq!((nets[0].fd, nets[0].vhost), (Some(5), false));
    }

    #[test]
    fn netdev_errors() {
        let mut d = Devices::default();
        let mut err = |v: &str| d.netdev("-netdev", v).unwrap_err().to_string();
        assert_eq!(
            err("user,id=n"),
            "-netdev: netdev type `user` is not supported (supported: tap)"
        );
        assert_eq!(err("tap,id=n"), "-netdev: missing ifname=TAP (or fd=N)");
        assert_eq!(
            err("tap,id=n,ifname=t,fd=3"),
            "-netdev: give the TAP once: ifname=TAP or fd=N, not both"
        );
        assert_eq!(
            err("tap,id=n,fd=3,fds=4"),
            "-netdev: give fd= or fds=, not both"
        );
        assert_eq!(
            err("tap,id=n,fds=3:4"),
            "-netdev: fds=3:4 gives several queues; one is supported (one descriptor)"
        );
        assert_eq!(
            err("tap,id=n,fd=x"),
            "-netdev: fd=x is not a descriptor number"
        );
        assert_eq!(
            err("tap,id=n,fd=-1"),
            "-netdev: fd=-1 is not a descriptor number"
        );
        assert!(err("tap,id=n,ifname=t,vhost=maybe").contains("not a boolean"));
        assert_eq!(
            err("tap,id=n,ifname=t,queues=2"),
            "-netdev: queues=2 is not supported (supported: 1)"
        );
        assert_eq!(
            err("tap,id=n,ifname=t,script=/etc/qemu-ifup"),
            "-netdev: script=/etc/qemu-ifup is not supported (supported: no, )"
        );
        assert_eq!(err("tap,ifname=t"), "-netdev: missing id=...");
        assert!(err("tap,id=n,ifname=t,mac=zz").contains("bad MAC address `zz`"));
        assert_eq!(
            err("tap,id=n,ifname=t,netdev=u"),
            "-netdev: give the tap device once (ifname=TAP)"
        );
    }

    #[test]
    fn device_references() {
        let mut d = Devices::default();
        d.drive("-drive", "id=a,file=/a").unwrap();
        d.drive("-drive", "id=b,file=/b").unwrap();
        d.device("-device", "virtio-blk-device,drive=b,serial=xyz")
            .unwrap();
        d.device("-device", "virtio-blk-mmio,drive=a,id=disk0")
            .unwrap();
        d.netdev("-netdev", "tap,id=n,ifname=tap0,mac=0e:90:df:9f:a8:88")
            .unwrap();
        d.device(
            "-device",
            "virtio-net-device,netdev=n,mac=0e:90:df:9f:a8:88",
        )
        .unwrap();
        let b = apply(d).unwrap();
        // Disks keep the order of their -drive.
        let ids: Vec<_> = b.drives.iter().map(|(d, _)| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(b.drives[1].0.serial.as_deref(), Some("xyz"));
    }

    #[test]
    fn device_reference_errors() {
        let mut d = Devices::default();
        d.drive("-drive", "id=a,file=/a").unwrap();
        d.device("-device", "virtio-blk-device,drive=missing")
            .unwrap();
        assert_eq!(
            apply(d).unwrap_err(),
            "-device: drive=missing names no -drive"
        );

        let mut d = Devices::default();
        d.drive("-drive", "id=a,file=/a").unwrap();
        d.device("-device", "virtio-blk-device,drive=a").unwrap();
        d.device("--device", "virtio-blk-device,drive=a").unwrap();
        assert_eq!(
            apply(d).unwrap_err(),
            "--device: -drive `a` is used by more than one device"
        );

        let mut d = Devices::default();
        d.device("-device", "virtio-net-device,netdev=n0").unwrap();
        assert_eq!(apply(d).unwrap_err(), "-device: netdev=n0 names no -netdev");

        let mut d = Devices::default();
        d.netdev("-netdev", "tap,id=n,ifname=tap0,mac=0e:90:df:9f:a8:88")
            .unwrap();
        d.device(
            "-device",
            "virtio-net-device,netdev=n,mac=0e:90:df:9f:a8:89",
        )
        .unwrap();
        assert_eq!(
            apply(d).unwrap_err(),
            "-device: mac differs from the -netdev mac"
        );

        let mut d = Devices::default();
        d.chardev("-chardev", "socket,id=c,path=/x").unwrap();
        d.device("-device", "virtconsole,chardev=d").unwrap();
        assert_eq!(
            apply(d).unwrap_err(),
            "-device: chardev=d names no -chardev"
        );

        let mut d = Devices::default();
        d.drive("-drive", "id=a,file=/a,serial=one").unwrap();
        d.device("-device", "virtio-blk-device,drive=a,serial=two")
            .unwrap();
        assert_eq!(
            apply(d).unwrap_err(),
            "-device: serial `two` differs from the -drive serial `one`"
        );
    }

    #[test]
    fn one_console_and_one_vsock() {
        let mut d = Devices::default();
        d.chardev("-chardev", "socket,id=a,path=/a,server,nowait")
            .unwrap();
        d.chardev("-chardev", "id=b,path=/b").unwrap();
        assert_eq!(
            apply(d).unwrap_err(),
            "-chardev: only one console is supported, got 2"
        );
        let mut d = Devices::default();
        d.device("-device", "vsock,id=v,guest-cid=3").unwrap();
        d.device("-device", "vhost-vsock-device,id=w,guest-cid=4")
            .unwrap();
        assert_eq!(
            apply(d).unwrap_err(),
            "-device: only one vsock device is supported"
        );
    }

    #[test]
    fn chardev_and_device_errors() {
        let mut d = Devices::default();
        assert_eq!(
            d.chardev("-chardev", "pty,id=c").unwrap_err().to_string(),
            "-chardev: chardev backend `pty` is not supported (supported: socket)"
        );
        assert_eq!(
            d.chardev("-chardev", "socket,id=c")
                .unwrap_err()
                .to_string(),
            "-chardev: missing path=..."
        );
        assert_eq!(
            d.chardev("-chardev", "socket,id=c,path=/p,server=off")
                .unwrap_err()
                .to_string(),
            "-chardev: server=off is not supported (the socket is always a server)"
        );
        d.chardev("-chardev", "socket,id=c,path=/p,server=on,wait=on")
            .unwrap();
        assert!(d
            .device("-device", "virtio-gpu-device")
            .unwrap_err()
            .to_string()
            .starts_with("-device: device `virtio-gpu-device` is not supported (supported: virtio-blk-device"));
        assert_eq!(
            d.device("-device", "id=x").unwrap_err().to_string(),
            "-device: missing device driver name"
        );
        assert_eq!(
            d.device("-device", "vsock,id=v").unwrap_err().to_string(),
            "-device: missing guest-cid=..."
        );
        assert_eq!(
            d.device("-device", "vsock,id=v,guest-cid=x")
                .unwrap_err()
                .to_string(),
            "-device: guest-cid `x` is not a number"
        );
        assert!(d
            .device("-device", "virtio-blk-device,drive=a,bus=x")
            .unwrap_err()
            .to_string()
            .starts_with("-device: unknown key `bus`"));
        d.device("-device", "virtio-serial-device").unwrap();
        d.device("-device", "virtio-serial-device,id=ser0").unwrap();
        d.device("-device", "virtconsole,chardev=c,id=con0,nr=0")
            .unwrap();
        assert_eq!(
            d.device("-device", "virtconsole,chardev=c,nr=1")
                .unwrap_err()
                .to_string(),
            "-device: nr=1 is not supported (the console is port 0, the only port)"
        );
        assert!(d
            .device("-device", "virtconsole,chardev=c,nr=x")
            .unwrap_err()
            .to_string()
            .contains("not a number"));
        d.device("-device", "vhost-vsock-device,guest-cid=5")
            .unwrap();
        assert_eq!(d.vsocks[0].0.id, DEFAULT_VSOCK_ID);
    }
}
