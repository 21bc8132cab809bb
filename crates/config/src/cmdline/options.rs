//! The option table: every option, how many values it takes, and its help.

/// How an option takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arity {
    /// No value: `-daemonize`.
    Flag,
    /// Exactly one value: `-kernel PATH`.
    Value,
    /// A value unless the next word is an option or there is none: `-D [FILE]`.
    Optional,
    /// One value plus the following words up to the next option, joined
    /// with spaces: `-append console=ttyS0 root=/dev/vda` (as StratoVirt).
    Words,
    /// Print the usage text and stop.
    Help,
    /// Print the version and stop.
    Version,
}

/// One option.
#[derive(Debug)]
pub(crate) struct Spec {
    /// Without dashes.
    pub name: &'static str,
    pub arity: Arity,
    /// May be given more than once.
    pub repeat: bool,
    /// The value, for the usage text.
    pub arg: &'static str,
    pub help: &'static str,
}

const fn spec(name: &'static str, arity: Arity, arg: &'static str, help: &'static str) -> Spec {
    Spec {
        name,
        arity,
        repeat: false,
        arg,
        help,
    }
}

const fn repeated(name: &'static str, arg: &'static str, help: &'static str) -> Spec {
    Spec {
        name,
        arity: Arity::Value,
        repeat: true,
        arg,
        help,
    }
}

use Arity::*;

pub(crate) const OPTIONS: &[Spec] = &[
    spec("name", Value, "NAME", "VM name, 1 to 255 characters (default: StratoVirt)"),
    spec("kernel", Value, "/path/to/vmlinux.bin", "kernel image (required)"),
    spec("append", Words, "CMDLINE", "kernel command line, e.g. \"console=ttyS0 root=/dev/vda reboot=k panic=1\""),
    spec("initrd", Value, "/path/to/initrd.img", "initrd image"),
    spec("smp", Value, "[cpus=]N", "number of vCPUs, 1..=254 (default: 1)"),
    spec("m", Value, "SIZE", "memory, 128MiB..=512GiB: MiB (1024), bytes (134217728) or with a K/M/G suffix (512M, 2G); default 256M"),
    repeated("drive", "id=ID,file=PATH[,readonly=on|off][,direct=on|off][,serial=SERIAL]", "virtio-blk disk backend (at most 6 disks; vda is the first)"),
    repeated("netdev", "tap,id=ID,ifname=TAP[,mac=MAC] | id=ID,netdev=TAP[,mac=MAC]", "virtio-net NIC on a host tap device (at most 2 NICs)"),
    repeated("chardev", "socket,id=ID,path=SOCKET,server,nowait | id=ID,path=SOCKET", "virtio-console on a unix socket (must not exist yet)"),
    repeated("device", "DRIVER[,KEY=VALUE...]", "virtio-blk-device,drive=ID | virtio-net-device,netdev=ID[,mac=MAC] | virtconsole,chardev=ID | virtio-serial-device | vhost-vsock-device,id=ID,guest-cid=N (or vsock,...)"),
    spec("qmp", Value, "unix:PATH,server,nowait", "QMP socket (must not exist yet)"),
    spec("api-channel", Value, "unix:PATH", "QMP socket, older spelling of -qmp"),
    spec("serial", Value, "stdio", "serial port (ttyS0) on this terminal"),
    spec("D", Optional, "[FILE]", "write the log to FILE (to stderr without one)"),
    spec("pidfile", Value, "FILE", "write the process id to FILE (with -daemonize; must not exist yet)"),
    spec("daemonize", Flag, "", "run in the background (needs -pidfile)"),
    spec("disable-seccomp", Flag, "", "turn off seccomp filtering (on by default)"),
    spec("omit_vm_memory", Flag, "", "leave guest memory out of core dumps"),
    spec("config", Value, "FILE.json", "read the VM configuration from a JSON file (other options override it)"),
    spec("machine", Value, "[type=]microvm[,dump-guest-core=on|off]", "machine type (only microvm)"),
    spec("incoming", Value, "file:/abs/dir", "start from a snapshot directory"),
    spec("h", Help, "", "print this help"),
    spec("help", Help, "", "print this help"),
    spec("V", Version, "", "print the version"),
    spec("version", Version, "", "print the version"),
];

/// The option an argument names, and a value glued to it (`--m=512`).
/// Single-dash and double-dash spellings are the same option.
pub(crate) fn lookup(arg: &str) -> Option<(&'static Spec, Option<String>)> {
    let (name, inline) = if let Some(rest) = arg.strip_prefix("--") {
        match rest.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (rest, None),
        }
    } else {
        (arg.strip_prefix('-')?, None)
    };
    let spec = OPTIONS.iter().find(|s| s.name == name)?;
    Some((spec, inline))
}

/// The usage text: every option with its value and what it does (no
/// trailing newline, for `println!`).
pub fn usage() -> String {
    let mut out = String::from(
        "Usage: stratovirt [OPTION]...\n\
         A lightweight virtual machine monitor for Linux/KVM (StratoVirt microVM).\n\
         Options start with one dash or two (-smp 2, --smp 2).\n\n\
         Options:\n",
    );
    let mut seen_help = false;
    let mut seen_version = false;
    for s in OPTIONS {
        match s.arity {
            Help if std::mem::replace(&mut seen_help, true) => continue,
            Version if std::mem::replace(&mut seen_version, true) => continue,
            Help => out.push_str("  -h, -help, --help\n"),
            Version => out.push_str("  -V, -version, --version\n"),
            _ if s.arg.is_empty() => out.push_str(&format!("  -{}\n", s.name)),
            _ => out.push_str(&format!("  -{} {}\n", s.name, s.arg)),
        }
        out.push_str(&format!("        {}\n", s.help));
    }
    out.push_str(
        "\nOr: stratovirt -config vm.json -qmp unix:/path/to/socket,server,nowait \
         [-D [FILE]] [-pidfile FILE -daemonize] [-disable-seccomp]",
    );
    out
}

/// `StratoVirt 0.1.0`: the product name and this build's version.
pub fn version() -> String {
    format!("StratoVirt {}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_spellings() {
        assert_eq!(lookup("-smp").unwrap().0.name, "smp");
        assert_eq!(lookup("--smp").unwrap().0.name, "smp");
        let (s, v) = lookup("--m=512M").unwrap();
        assert_eq!((s.name, v.as_deref()), ("m", Some("512M")));
        assert!(lookup("-m=512M").is_none());
        assert!(lookup("smp").is_none());
        assert!(lookup("-").is_none());
        assert!(lookup("--").is_none());
        assert!(lookup("-bogus").is_none());
        assert!(lookup("---smp").is_none());
    }

    #[test]
    fn usage_lists_every_option() {
        let u = usage();
        for s in OPTIONS {
            assert!(u.contains(&format!("-{}", s.name)), "{}", s.name);
        }
        for name in [
            "-name",
            "-kernel",
            "-append",
            "-initrd",
            "-smp",
            "-m ",
            "-drive",
            "-netdev",
            "-chardev",
            "-device",
            "-api-channel",
            "-qmp",
            "-serial",
            "-D ",
            "-pidfile",
            "-disable-seccomp",
            "-omit_vm_memory",
            "-daemonize",
            "-config",
            "-machine",
            "-incoming",
            "--help",
            "--version",
        ] {
            assert!(u.contains(name), "{name}");
        }
    }

    #[test]
    fn version_line() {
        assert_eq!(
            version(),
            format!("StratoVirt {}", env!("CARGO_PKG_VERSION"))
        );
        assert!(!version().contains('\n'));
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in OPTIONS.iter().enumerate() {
            assert!(
                OPTIONS[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
    }
}
