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
    spec("kernel", Value, "/path/to/vmlinux.bin", "kernel image: raw vmlinux.bin, ELF vmlinux or bzImage (required)"),
    spec("append", Words, "CMDLINE", "kernel command line, e.g. \"console=ttyS0 root=/dev/vda reboot=k panic=1\""),
    spec("initrd", Value, "/path/to/initrd.img", "initrd image"),
    spec("smp", Value, "[cpus=]N[,sockets=S][,cores=C][,threads=T]", "number of vCPUs, 1..=254 (default: 1), and their topology (default: one vCPU per socket)"),
    spec("m", Value, "SIZE", "memory, 128MiB..=512GiB: MiB (1024), bytes (134217728) or with a K/M/G/T suffix (512M, 1.5G, 2G); default 256M"),
    repeated("drive", "id=ID,file=PATH[,readonly=on|off][,direct=on|off][,serial=SERIAL]", "virtio-blk disk backend (at most 6 disks; vda is the first; each image once, locked while in use)"),
    repeated("netdev", "tap,id=ID,ifname=TAP|fd=N|fds=N[,vhost=on|off][,vhostfd=N][,mac=MAC] | id=ID,netdev=TAP[,mac=MAC]", "virtio-net NIC on an existing host TAP, by name or an inherited descriptor (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR); vhost=on moves frames in the host kernel (/dev/vhost-net); at most 2 NICs, eth0 and eth1, hot-plugged ones included; without mac a random local one"),
    repeated("chardev", "socket,id=ID,path=SOCKET,server,nowait | id=ID,path=SOCKET", "virtio-console (the guest's hvc0) on a unix socket, created 0600 (must not exist yet); one client at a time, a new one replaces it; up to 64 KiB of output wait for a client"),
    repeated("device", "DRIVER[,KEY=VALUE...]", "virtio-blk-device,drive=ID | virtio-net-device,netdev=ID[,id=ID][,mac=MAC] | virtconsole,chardev=ID[,id=ID][,nr=0] (virtio-serial-device before it is optional) | virtio-balloon-device[,deflate-on-oom=on|off][,free-page-reporting=on|off] (the memory balloon; QMP balloon, query-balloon) | vhost-vsock-device,id=ID,guest-cid=N[,vhostfd=N] (or vsock,...): vhost-vsock through /dev/vhost-vsock (module vhost_vsock); add uds-path=SOCKET for the userspace backend on a unix socket, created 0600 (host programs send CONNECT <port>; guest connections to port P go to SOCKET_P)"),
    spec("qmp", Value, "unix:PATH,server,nowait", "QMP socket, created 0600 (must not exist yet)"),
    spec("api-channel", Value, "unix:PATH", "QMP socket, older spelling of -qmp"),
    spec("serial", Value, "stdio", "serial port (ttyS0) on this terminal; on a terminal, Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A, Ctrl-A h lists the keys"),
    spec("D", Optional, "[FILE]", "log at info level to FILE (created 0600, appended) or, without FILE, to stderr; without -D only warnings and errors go to stderr"),
    spec("pidfile", Value, "FILE", "write the process id to FILE (with -daemonize; must not exist yet)"),
    spec("daemonize", Flag, "", "run in the background (needs -pidfile)"),
    spec("disable-seccomp", Flag, "", "turn off seccomp filtering (on by default)"),
    spec("omit_vm_memory", Flag, "", "leave guest memory out of core dumps"),
    spec("config", Value, "FILE.json", "read the VM configuration from a JSON file (other options override it)"),
    spec("machine", Value, "[type=]microvm[,dump-guest-core=on|off]", "machine type (only microvm)"),
    spec("incoming", Value, "file:/abs/dir", "start from a snapshot directory (QMP migrate writes one), with the configuration it was taken with"),
    spec("h", Help, "", "print this help"),
    spec("help", Help, "", "print this help"),
    spec("V", Version, "", "print the version"),
    spec("version", Version, "", "print the version"),
];

/// The option an argument names, and a value glued to it (`--m=512`, `-m=512`).
/// Single-dash and double-dash spellings are the same option.
pub(crate) fn lookup(arg: &str) -> Option<(&'static Spec, Option<String>)> {
    let rest = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    let (name, inline) = match rest.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (rest, None),
    };
    let spec = OPTIONS.iter().find(|s| s.name == name)?;
    Some((spec, inline))
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The known option nearest to an unknown `arg` (`-kernal` → `-kernel`), spelled with the
/// same dashes, when it is close enough to be a typo.
pub(crate) fn suggest(arg: &str) -> Option<String> {
    let (dashes, rest) = match arg.strip_prefix("--") {
        Some(r) => ("--", r),
        None => ("-", arg.strip_prefix('-')?),
    };
    let name = rest
        .split_once('=')
        .map_or(rest, |(n, _)| n)
        .to_ascii_lowercase();
    let (best, d) = OPTIONS
        .iter()
        .map(|s| {
            (
                s.name,
                edit_distance(name.as_bytes(), s.name.to_ascii_lowercase().as_bytes()),
            )
        })
        .min_by_key(|&(_, d)| d)?;
    // At most two edits, and no more than a third of the word: `-x` suggests nothing.
    (d <= 2 && d * 3 <= name.len().max(best.len()) && name.len() >= 2)
        .then(|| format!("{dashes}{best}"))
}

/// One line for a user who typed nothing: the minimum command and where the rest is.
pub fn short_usage() -> String {
    "Usage: stratovirt -kernel /path/to/vmlinux.bin [-append CMDLINE] [-smp N] [-m SIZE] \
     [-drive id=ID,file=PATH] [-qmp unix:PATH,server,nowait] [-serial stdio] \
     (stratovirt -help lists every option)"
        .to_string()
}

/// The usage text: every option with its value and what it does (no
/// trailing newline, for `println!`).
pub fn usage() -> String {
    let mut out = String::from(
        "Usage: stratovirt [OPTION]...\n\
         A lightweight virtual machine monitor for Linux/KVM (StratoVirt microVM).\n\
         Options start with one dash or two; the value follows a space or '=' (-smp 2, --smp=2).\n\n\
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
         [-D [FILE]] [-pidfile FILE -daemonize] [-disable-seccomp]\n\n\
         Environment:\n  STRATOVIRT_LOG_LEVEL=off|error|warn|info|debug|trace\n        \
         the log level (default: info with -D, warn without)\n\n\
         Not supported yet: \
         vCPU hot-plug; machine types other than microvm; serial backends other than stdio; \
         hosts other than x86_64.",
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
        let (s, v) = lookup("-kernel=/k=1").unwrap();
        assert_eq!((s.name, v.as_deref()), ("kernel", Some("/k=1")));
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
    fn typos_get_the_nearest_option() {
        assert_eq!(suggest("-kernal").as_deref(), Some("-kernel"));
        assert_eq!(suggest("--kernal=/k").as_deref(), Some("--kernel"));
        assert_eq!(suggest("-qpm").as_deref(), Some("-qmp"));
        assert_eq!(suggest("-daemonise").as_deref(), Some("-daemonize"));
        assert_eq!(
            suggest("-disable_seccomp").as_deref(),
            Some("-disable-seccomp")
        );
        assert_eq!(suggest("-Kernel").as_deref(), Some("-kernel"));
        assert_eq!(suggest("-pidfle").as_deref(), Some("-pidfile"));
        assert_eq!(suggest("-x"), None);
        assert_eq!(suggest("-bogus"), None);
        assert_eq!(suggest("-nographic"), None);
    }

    #[test]
    fn help_says_what_is_supported_and_what_is_not_yet() {
        let u = usage();
        let help = |name: &str| {
            u.lines()
                .skip_while(|l| !l.starts_with(&format!("  {name} ")))
                .nth(1)
                .unwrap()
                .to_string()
        };
        for name in ["-netdev", "-chardev", "-incoming"] {
            assert!(!help(name).contains("not supported"), "{name}");
        }
        assert!(help("-chardev").contains("hvc0"));
        assert!(help("-netdev").contains("vhost=on"));
        assert!(
            !u.contains("virtio-console,") && !u.contains("virtio-net,"),
            "not in the not-supported list"
        );
        assert!(help("-device").contains("uds-path=SOCKET"));
        assert!(help("-device").contains("vhostfd=N"));
        assert!(!help("-device").contains("not supported"));
        assert!(help("-device").contains("virtio-balloon-device[,deflate-on-oom=on|off]"));
        assert!(u.contains("STRATOVIRT_LOG_LEVEL"));
        assert!(u.contains("Ctrl-A x"));
        assert!(u.contains("K/M/G/T"));
        assert!(!short_usage().contains('\n'));
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
