//! A TAP device: the host end of a NIC. Opened by name (an existing TAP, `ifname=`) or taken
//! over from a descriptor a manager opened (`fd=`, `fds=`, QMP `getfd`), always in the mode
//! this device needs: `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR` with a 12-byte virtio-net header
//! (`struct virtio_net_hdr_v1`, what a virtio 1.x driver puts before every frame), so frames
//! and their offload metadata pass through unchanged.
//!
//! Opening by name never creates an interface: a TAP that does not exist is refused, as is one
//! another process holds (a single-queue TAP has one user), one this user may not use, and any
//! interface that is not a TAP. The kernel creates a TAP when asked for a name it does not know
//! (`TUNSETIFF`), so an attach that made a new, non-persistent interface closes it at once
//! (which destroys it) and reports it as missing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use vmm_sys_util::ioctl::{ioctl_with_mut_ref, ioctl_with_ref, ioctl_with_val};
use vmm_sys_util::{ioctl_ior_nr, ioctl_iow_nr};

/// The bytes before every frame on the TAP and in the virtqueues (virtio 1.x 5.1.6).
pub const VNET_HDR_LEN: usize = 12;
/// Longest interface name (`IFNAMSIZ` less the NUL).
pub const MAX_IFNAME: usize = 15;

const TUN_PATH: &str = "/dev/net/tun";
const TUNTAP: u32 = b'T' as u32;
ioctl_iow_nr!(TUNSETIFF, TUNTAP, 202, ::std::os::raw::c_int);
ioctl_iow_nr!(TUNSETOFFLOAD, TUNTAP, 208, ::std::os::raw::c_uint);
ioctl_iow_nr!(TUNSETSNDBUF, TUNTAP, 212, ::std::os::raw::c_int);
ioctl_ior_nr!(TUNGETIFF, TUNTAP, 210, ::std::os::raw::c_uint);
ioctl_iow_nr!(TUNSETVNETHDRSZ, TUNTAP, 216, ::std::os::raw::c_int);

/// `TUNSETOFFLOAD` flags: what the TAP may hand us (frames towards the guest) with their
/// checksum left for the guest to fill in, or as large segments for it to take whole.
pub mod offload {
    pub const CSUM: u32 = 0x01;
    pub const TSO4: u32 = 0x02;
    pub const TSO6: u32 = 0x04;
    pub const TSO_ECN: u32 = 0x08;
}

const IFF_TAP: i16 = libc::IFF_TAP as i16;
const IFF_NO_PI: i16 = libc::IFF_NO_PI as i16;
const IFF_VNET_HDR: i16 = libc::IFF_VNET_HDR as i16;
const IFF_MULTI_QUEUE: i16 = libc::IFF_MULTI_QUEUE as i16;
const IFF_PERSIST: i16 = libc::IFF_PERSIST as i16;

/// `struct ifreq` as TUNSETIFF and TUNGETIFF use it: a name and the flags.
#[repr(C)]
#[derive(Clone, Copy)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

impl IfReq {
    fn new(name: &str, flags: i16) -> Self {
        let mut r = IfReq {
            name: [0; 16],
            flags,
            _pad: [0; 22],
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        r
    }

    fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// Why a TAP could not be used. The messages name the TAP or the descriptor.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("TAP device name `{0}` is invalid (1 to 15 bytes, no `/`, NUL or blank)")]
    BadName(String),
    #[error("cannot open {TUN_PATH}: {0}")]
    OpenTun(io::Error),
    #[error("TAP device `{0}` does not exist: No such device (os error 19) (create it first, e.g. `ip tuntap add {0} mode tap`)")]
    Missing(String),
    #[error("no permission to use TAP device `{name}`: {source} (it belongs to another user or group, or does not exist)")]
    Permission { name: String, source: io::Error },
    #[error("TAP device `{0}` is in use by another process (a TAP takes one user)")]
    InUse(String),
    #[error("`{name}` is not a TAP device (a TUN device, a multi-queue TAP or another kind of interface): {source}")]
    NotATap { name: String, source: io::Error },
    #[error("cannot attach to TAP device `{name}`: {source}")]
    Attach { name: String, source: io::Error },
    #[error("descriptor {0} is not open")]
    FdNotOpen(RawFd),
    #[error("descriptor {fd} is not a TAP device: {source}")]
    FdNotTap { fd: RawFd, source: io::Error },
    #[error("descriptor {fd} is TUN device `{name}`, not a TAP (IFF_TAP)")]
    FdTun { fd: RawFd, name: String },
    #[error("descriptor {fd} (TAP `{name}`) was opened without {flag}; open it with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR")]
    FdFlags {
        fd: RawFd,
        name: String,
        flag: &'static str,
    },
    #[error("TAP `{name}`: {what}: {source}")]
    Setup {
        name: String,
        what: &'static str,
        source: io::Error,
    },
}

/// An attached TAP queue, non-blocking, with the 12-byte virtio-net header.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    /// A socket standing in for a TAP in unit tests (it takes no TAP ioctls).
    #[cfg(test)]
    stand_in: bool,
}

fn check_name(name: &str) -> Result<(), TapError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME
        && !name
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace())
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(TapError::BadName(name.to_string()))
    }
}

/// Whether the host has an interface called `name` (as this process's sysfs shows it; only
/// used to word an error).
fn interface_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

impl Tap {
    /// Attaches to the existing TAP `name`.
    pub fn open_named(name: &str) -> Result<Self, TapError> {
        check_name(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(TUN_PATH)
            .map_err(TapError::OpenTun)?;
        let mut req = IfReq::new(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
        // SAFETY: TUNSETIFF reads (and may update) the ifreq we pass, which lives for the call.
        let r = unsafe { ioctl_with_mut_ref(&file, TUNSETIFF(), &mut req) };
        if r < 0 {
            let source = io::Error::last_os_error();
            let name = name.to_string();
            return Err(match source.raw_os_error() {
                Some(libc::EBUSY) => TapError::InUse(name),
                Some(libc::EPERM) if !interface_exists(&name) => TapError::Missing(name),
                Some(libc::EPERM) | Some(libc::EACCES) => TapError::Permission { name, source },
                Some(libc::EINVAL) => TapError::NotATap { name, source },
                _ => TapError::Attach { name, source },
            });
        }
        let tap = Tap {
            file,
            name: name.to_string(),
            #[cfg(test)]
            stand_in: false,
        };
        // A name the kernel did not know got a new TAP, which goes away when `tap` closes.
        if tap
            .flags()
            .map_err(|source| tap.setup("TUNGETIFF", source))?
            & IFF_PERSIST
            == 0
        {
            return Err(TapError::Missing(name.to_string()));
        }
        tap.set_vnet_hdr_len()?;
        Ok(tap)
    }

    /// Takes over descriptor `fd`, which must be an attached TAP queue opened with
    /// `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`. On success the descriptor belongs to the `Tap`
    /// (close-on-exec and non-blocking from then on); on failure it is left as it was.
    pub fn from_fd(fd: RawFd) -> Result<Self, TapError> {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(TapError::FdNotOpen(fd));
        }
        let flags = Self::raw_flags(fd).map_err(|source| TapError::FdNotTap { fd, source })?;
        let (name, flags) = flags;
        if flags & IFF_TAP == 0 {
            return Err(TapError::FdTun { fd, name });
        }
        for (flag, text) in [(IFF_NO_PI, "IFF_NO_PI"), (IFF_VNET_HDR, "IFF_VNET_HDR")] {
            if flags & flag == 0 {
                return Err(TapError::FdFlags {
                    fd,
                    name,
                    flag: text,
                });
            }
        }
        if flags & IFF_MULTI_QUEUE != 0 {
            log::info!("TAP {name} (descriptor {fd}) is multi-queue; one queue is used");
        }
        // SAFETY: `fd` is open (checked above) and the caller hands it over to us.
        let file = unsafe { File::from_raw_fd(fd) };
        let tap = Tap {
            file,
            name,
            #[cfg(test)]
            stand_in: false,
        };
        for (what, cmd, flag) in [
            ("close-on-exec", libc::F_SETFD, libc::FD_CLOEXEC),
            (
                "non-blocking",
                libc::F_SETFL,
                libc::O_NONBLOCK | libc::O_RDWR,
            ),
        ] {
            // SAFETY: plain fcntl flag updates on a descriptor we own.
            if unsafe { libc::fcntl(tap.file.as_raw_fd(), cmd, flag) } < 0 {
                let source = io::Error::last_os_error();
                let e = tap.setup(what, source);
                // Hand the descriptor back untouched by closing nothing.
                let _ = std::os::fd::IntoRawFd::into_raw_fd(tap.file);
                return Err(e);
            }
        }
        tap.set_vnet_hdr_len()?;
        Ok(tap)
    }

    /// The interface name of the TAP queue descriptor `fd`, without taking it over.
    pub fn name_of_fd(fd: RawFd) -> Result<String, TapError> {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(TapError::FdNotOpen(fd));
        }
        let (name, flags) =
            Self::raw_flags(fd).map_err(|source| TapError::FdNotTap { fd, source })?;
        if flags & IFF_TAP == 0 {
            return Err(TapError::FdTun { fd, name });
        }
        Ok(name)
    }

    /// (interface name, TUNGETIFF flags) of an attached TUN/TAP descriptor.
    fn raw_flags(fd: RawFd) -> io::Result<(String, i16)> {
        struct Borrowed(RawFd);
        impl AsRawFd for Borrowed {
            fn as_raw_fd(&self) -> RawFd {
                self.0
            }
        }
        let mut req = IfReq::new("", 0);
        // SAFETY: TUNGETIFF fills the ifreq we pass, which lives for the call.
        let r = unsafe { ioctl_with_mut_ref(&Borrowed(fd), TUNGETIFF(), &mut req) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((req.name(), req.flags))
    }

    fn flags(&self) -> io::Result<i16> {
        Self::raw_flags(self.file.as_raw_fd()).map(|(_, f)| f)
    }

    fn setup(&self, what: &'static str, source: io::Error) -> TapError {
        TapError::Setup {
            name: self.name.clone(),
            what,
            source,
        }
    }

    /// The queue's mode for this device: the 12-byte header, and a send buffer the host's
    /// stack never runs short of (what QEMU sets too: a full one would make writes of the
    /// guest's frames fail, or vhost-net wait for room, while the stack has room to spare).
    fn set_vnet_hdr_len(&self) -> Result<(), TapError> {
        let len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads the int we pass.
        let r = unsafe { ioctl_with_ref(&self.file, TUNSETVNETHDRSZ(), &len) };
        if r < 0 {
            return Err(self.setup("TUNSETVNETHDRSZ", io::Error::last_os_error()));
        }
        let sndbuf = libc::c_int::MAX;
        // SAFETY: TUNSETSNDBUF reads the int we pass.
        let r = unsafe { ioctl_with_ref(&self.file, TUNSETSNDBUF(), &sndbuf) };
        if r < 0 {
            return Err(self.setup("TUNSETSNDBUF", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A TAP stand-in for unit tests: one end of a `SOCK_SEQPACKET` socketpair, which keeps
    /// frame boundaries as a TAP does; the other end plays the host's network.
    #[cfg(test)]
    pub(crate) fn stand_in(file: File, name: &str) -> Self {
        Tap {
            file,
            name: name.to_string(),
            stand_in: true,
        }
    }

    /// Sets what the TAP may send with offloads left to the guest ([`offload`] flags).
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        #[cfg(test)]
        if self.stand_in {
            return Ok(());
        }
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        let r = unsafe { ioctl_with_val(&self.file, TUNSETOFFLOAD(), libc::c_ulong::from(flags)) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Reads one frame (header included); `WouldBlock` when none is waiting.
    pub fn read_frame(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: reads at most `buf.len()` bytes into `buf`.
        let n = unsafe {
            libc::read(
                self.file.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Writes one frame (header included) gathered from `iov`.
    ///
    /// # Safety
    /// Every iovec must describe memory that is readable for the duration of the call.
    pub unsafe fn write_frame(&self, iov: &[libc::iovec]) -> io::Result<usize> {
        // SAFETY: the caller guarantees the buffers; the count is the slice's length.
        let n = unsafe { libc::writev(self.file.as_raw_fd(), iov.as_ptr(), iov.len() as i32) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_are_the_kernels() {
        assert_eq!(TUNSETIFF(), 0x4004_54ca);
        assert_eq!(TUNSETOFFLOAD(), 0x4004_54d0);
        assert_eq!(TUNGETIFF(), 0x8004_54d2);
        assert_eq!(TUNSETVNETHDRSZ(), 0x4004_54d8);
        assert_eq!(TUNSETSNDBUF(), 0x4004_54d4);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn bad_names_are_refused_before_any_system_call() {
        for n in ["", "a/b", "0123456789abcdef", "a b", ".", ".."] {
            assert!(
                matches!(Tap::open_named(n), Err(TapError::BadName(_))),
                "{n:?}"
            );
        }
    }

    #[test]
    fn descriptors_that_are_not_taps_are_named() {
        assert!(matches!(Tap::from_fd(-1), Err(TapError::FdNotOpen(-1))));
        // A descriptor number nothing has open.
        let unused = {
            let f = File::open("/dev/null").unwrap();
            f.as_raw_fd()
        };
        assert!(matches!(Tap::from_fd(unused), Err(TapError::FdNotOpen(_))));
        let f = File::open("/dev/null").unwrap();
        let e = Tap::from_fd(f.as_raw_fd()).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "descriptor {} is not a TAP device: ",
                f.as_raw_fd()
            )),
            "{e}"
        );
        // /dev/null is still open and ours.
        // SAFETY: F_GETFD only reads the descriptor's flags.
        assert!(unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFD) } >= 0);
    }
}
