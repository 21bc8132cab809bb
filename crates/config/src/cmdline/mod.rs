//! The command line, StratoVirt/QEMU style: `-opt value` (or `--opt value`,
//! `--opt=value`), with `key=value,...` sub-options. Options beside `-config`
//! override the file's values.

mod devices;
mod options;
mod size;
mod suboptions;

use std::path::PathBuf;

use crate::builder::Builder;
use crate::error::{quote, ConfigError};
use crate::json::{self, Reader};
use crate::model::VmConfig;
use crate::origin::Origin;
use crate::topology::CpuTopology;
use crate::validate::{probe_path, Probe};
use devices::{server_flags, Devices};
use options::{lookup, suggest, Arity, Spec};
use suboptions::{parse_u64, First, SubOpts};

pub use options::{short_usage, usage, version};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start this (validated) VM.
    Run(Box<VmConfig>),
    /// `-h`, `-help`, `--help`: print this usage text and exit successfully.
    Help(String),
    /// `-V`, `-version`, `--version`: print this line and exit successfully.
    Version(String),
}

/// Parse and validate a command line. `args` are the arguments after the
/// program name (`std::env::args().skip(1)`).
pub fn parse_args(args: &[String]) -> Result<Action, ConfigError> {
    parse_with(args, &Host::REAL)
}

/// [`parse_args`] on this process's own arguments.
pub fn parse_env() -> Result<Action, ConfigError> {
    let args = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| ConfigError::NotUtf8(quote(&a.to_string_lossy())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    parse_args(&args)
}

/// How parsing looks at the host: tests substitute both.
pub(crate) struct Host {
    pub probe: Probe,
    pub read: Reader,
}

impl Host {
    pub(crate) const REAL: Host = Host {
        probe: probe_path,
        read: read_file,
    };
}

fn read_file(path: &std::path::Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// One option as given: its spelling, its table entry and its value.
#[derive(Debug)]
struct Given {
    spelling: String,
    spec: &'static Spec,
    value: Option<String>,
}

impl Given {
    fn origin(&self) -> Origin {
        Origin::opt(&self.spelling)
    }

    fn value(&self) -> &str {
        self.value.as_deref().unwrap_or_default()
    }
}

enum Tokens {
    Stop(Action),
    Options(Vec<Given>),
}

fn is_option(arg: &str) -> bool {
    lookup(arg).is_some()
}

/// Split the arguments into options and their values.
fn tokenize(args: &[String]) -> Result<Tokens, ConfigError> {
    let mut out: Vec<Given> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if !arg.starts_with('-') || arg == "-" {
            return Err(ConfigError::UnexpectedArgument(quote(arg)));
        }
        let Some((spec, inline)) = lookup(arg) else {
            return Err(ConfigError::UnknownOption {
                arg: arg.clone(),
                suggestion: suggest(arg),
            });
        };
        let spelling = match arg.split_once('=') {
            Some((name, _)) if inline.is_some() => name.to_string(),
            _ => arg.clone(),
        };
        let next_value = |i: usize| args.get(i).filter(|a| !is_option(a)).cloned();
        let value = match spec.arity {
            Arity::Help => return Ok(Tokens::Stop(Action::Help(usage()))),
            Arity::Version => return Ok(Tokens::Stop(Action::Version(version()))),
            Arity::Flag => {
                if inline.is_some() {
                    return Err(ConfigError::invalid(spelling, "takes no value"));
                }
                None
            }
            Arity::Value => match inline {
                Some(v) => Some(v),
                None => {
                    let v =
                        next_value(i).ok_or_else(|| ConfigError::MissingValue(spelling.clone()))?;
                    i += 1;
                    Some(v)
                }
            },
            Arity::Optional => match inline {
                Some(v) => Some(v),
                None => match args.get(i).filter(|a| !a.starts_with('-')) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => None,
                },
            },
            Arity::Words => {
                let mut words = match inline {
                    Some(v) => v,
                    None => {
                        let v = next_value(i)
                            .ok_or_else(|| ConfigError::MissingValue(spelling.clone()))?;
                        i += 1;
                        v
                    }
                };
                while let Some(w) = args.get(i).filter(|a| !a.starts_with('-')) {
                    words.push(' ');
                    words.push_str(w);
                    i += 1;
                }
                Some(words)
            }
        };
        let repeatable = spec.repeat || spec.arity == Arity::Flag;
        if !repeatable && out.iter().any(|g| g.spec.name == spec.name) {
            return Err(ConfigError::Duplicate(spelling));
        }
        out.push(Given {
            spelling,
            spec,
            value,
        });
    }
    Ok(Tokens::Options(out))
}

/// `-smp N` or `-smp [cpus=]N[,maxcpus=N][,sockets=S][,dies=1][,clusters=1][,cores=C][,threads=T]`:
/// the vCPU count and, when any level is given, the topology. Missing levels are filled in as
/// QEMU does on x86 (threads 1, then sockets before cores); the levels must multiply to the
/// count.
fn parse_smp(opt: &str, value: &str) -> Result<(u64, Option<CpuTopology>), ConfigError> {
    let mut s = SubOpts::parse(opt, value, First::Auto);
    let positional = match s.positional() {
        Some(p) => Some(parse_u64(opt, "vCPU count", &p)?),
        None => None,
    };
    let cpus = match (positional, s.take_u64("cpus")?) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                opt,
                "give the vCPU count once (N or cpus=N)",
            ))
        }
        (a, b) => a.or(b),
    };
    let maxcpus = s.take_u64("maxcpus")?;
    let sockets = s.take_u64("sockets")?;
    for key in ["dies", "clusters"] {
        if let Some(n) = s.take_u64(key)?.filter(|&n| n != 1) {
            return Err(ConfigError::invalid(
                opt,
                format!("{key}={n} is not supported (a microvm has sockets, cores and threads)"),
            ));
        }
    }
    let cores = s.take_u64("cores")?;
    let threads = s.take_u64("threads")?;
    s.finish()?;
    for (key, n) in [("sockets", sockets), ("cores", cores), ("threads", threads)] {
        if n == Some(0) {
            return Err(ConfigError::invalid(
                opt,
                format!("{key}=0: every level needs at least one"),
            ));
        }
    }
    let given = sockets.is_some() || cores.is_some() || threads.is_some();
    let Some(cpus) = cpus.or(maxcpus).or_else(|| {
        given.then(|| {
            sockets
                .unwrap_or(1)
                .saturating_mul(cores.unwrap_or(1))
                .saturating_mul(threads.unwrap_or(1))
        })
    }) else {
        return Err(ConfigError::MissingValue(opt.to_string()));
    };
    if let Some(max) = maxcpus {
        if max != cpus {
            return Err(ConfigError::invalid(
                opt,
                format!("maxcpus={max} must equal the vCPU count {cpus} (vCPU hot-plug is not supported)"),
            ));
        }
    }
    if !given {
        return Ok((cpus, None));
    }
    let threads = threads.unwrap_or(1);
    // The one level not given: the count divided by the others, which must divide it.
    let fill = |known: u64, what: &str| {
        if known != 0 && cpus % known == 0 {
            Ok(cpus / known)
        } else {
            Err(ConfigError::invalid(
                opt,
                format!("the vCPU count {cpus} is not a multiple of {what} = {known}"),
            ))
        }
    };
    let (sockets, cores) = match (sockets, cores) {
        (Some(s), Some(c)) => (s, c),
        (None, c) => {
            let c = c.unwrap_or(1);
            (fill(c.saturating_mul(threads), "cores*threads")?, c)
        }
        (Some(s), None) => (s, fill(s.saturating_mul(threads), "sockets*threads")?),
    };
    let product = sockets.saturating_mul(cores).saturating_mul(threads);
    if product != cpus {
        return Err(ConfigError::invalid(
            opt,
            format!("sockets*cores*threads is {product}, it must equal the vCPU count {cpus}"),
        ));
    }
    let narrow =
        |n: u64| u32::try_from(n).map_err(|_| ConfigError::invalid(opt, "topology is too large"));
    Ok((
        cpus,
        Some(CpuTopology {
            sockets: narrow(sockets)?,
            cores: narrow(cores)?,
            threads: narrow(threads)?,
        }),
    ))
}

/// `-machine [type=]microvm[,dump-guest-core=on|off][,accel=kvm]`: the
/// dump-guest-core setting, if given.
fn parse_machine(opt: &str, value: &str) -> Result<Option<bool>, ConfigError> {
    let mut s = SubOpts::parse(opt, value, First::Auto);
    let kind = match (s.positional(), s.take("type")?) {
        (Some(_), Some(_)) => return Err(ConfigError::invalid(opt, "give the machine type once")),
        (a, b) => a.or(b),
    };
    let dump = s.take_bool("dump-guest-core")?;
    let accel = s.take("accel")?;
    s.finish()?;
    if let Some(kind) = kind.filter(|k| k != "microvm") {
        return Err(ConfigError::invalid(
            opt,
            format!(
                "machine type {} is not supported (supported: microvm)",
                quote(&kind)
            ),
        ));
    }
    if let Some(accel) = accel.filter(|a| a != "kvm") {
        return Err(ConfigError::invalid(
            opt,
            format!("accel {} is not supported (supported: kvm)", quote(&accel)),
        ));
    }
    Ok(dump)
}

/// `-qmp unix:PATH[,server][,nowait]` and `-api-channel unix:PATH`.
fn parse_qmp(opt: &str, value: &str) -> Result<PathBuf, ConfigError> {
    let mut s = SubOpts::parse(opt, value, First::Value);
    let addr = s.positional().unwrap_or_default();
    let Some(path) = addr.strip_prefix("unix:") else {
        return Err(ConfigError::invalid(
            opt,
            format!("only unix:PATH is supported, got {}", quote(&addr)),
        ));
    };
    server_flags(&mut s)?;
    s.finish()?;
    Ok(path.into())
}

/// `-incoming file:/abs/dir`.
fn parse_incoming(opt: &str, value: &str) -> Result<PathBuf, ConfigError> {
    match value.strip_prefix("file:") {
        Some(path) => Ok(path.into()),
        None => Err(ConfigError::invalid(
            opt,
            format!("only file:/abs/dir is supported, got {}", quote(value)),
        )),
    }
}

/// Apply the options to a builder (empty, or holding the `-config` file).
fn apply(given: &[Given], b: &mut Builder) -> Result<(), ConfigError> {
    let mut devices = Devices::default();
    let mut qmp_option: Option<&str> = None;
    let mut omit_flag: Option<Origin> = None;
    let mut dump_guest_core: Option<(bool, Origin)> = None;
    for g in given {
        let (opt, v, o) = (g.spelling.as_str(), g.value(), g.origin());
        match g.spec.name {
            "name" => b.name = Some((v.to_string(), o)),
            "kernel" => b.kernel = Some((v.into(), o)),
            "append" => b.append = Some((v.to_string(), o)),
            "initrd" => b.initrd = Some((v.into(), o)),
            "smp" => {
                let (cpus, topology) = parse_smp(opt, v)?;
                b.vcpus = Some((cpus, o.clone()));
                b.topology = topology.map(|t| (t, o));
            }
            "m" => b.mem = Some((size::parse_mem_option(opt, v)?, o)),
            "drive" => devices.drive(opt, v)?,
            "netdev" => devices.netdev(opt, v)?,
            "chardev" => devices.chardev(opt, v)?,
            "device" => devices.device(opt, v)?,
            "qmp" | "api-channel" => {
                if let Some(first) = qmp_option {
                    return Err(ConfigError::invalid(
                        opt,
                        format!("cannot be used together with {first} (one QMP socket)"),
                    ));
                }
                qmp_option = Some(opt);
                b.qmp = Some((parse_qmp(opt, v)?, o));
            }
            "serial" => {
                if v != "stdio" {
                    return Err(ConfigError::invalid(
                        opt,
                        format!("{} is not supported (supported: stdio)", quote(v)),
                    ));
                }
                b.serial = Some((true, o));
            }
            "D" => b.log_file = Some((g.value.as_ref().map(PathBuf::from), o)),
            "pidfile" => b.pidfile = Some((v.into(), o)),
            "daemonize" => b.daemonize = Some(o),
            "disable-seccomp" => b.disable_seccomp = true,
            "omit_vm_memory" => omit_flag = Some(o),
            "machine" => dump_guest_core = parse_machine(opt, v)?.map(|d| (d, o)),
            "incoming" => b.incoming = Some((parse_incoming(opt, v)?, o)),
            // Read before the other options, see `parse_with`.
            "config" => {}
            other => unreachable!("option -{other} has no handler"),
        }
    }
    match (omit_flag, dump_guest_core) {
        (Some(o), Some((true, _))) => {
            return Err(ConfigError::invalid(
                o.name(),
                "conflicts with -machine dump-guest-core=on",
            ))
        }
        (Some(o), _) => b.omit_vm_memory = Some((true, o)),
        (None, Some((dump, o))) => b.omit_vm_memory = Some((!dump, o)),
        (None, None) => {}
    }
    devices.apply(b)
}

pub(crate) fn parse_with(args: &[String], host: &Host) -> Result<Action, ConfigError> {
    let given = match tokenize(args)? {
        Tokens::Stop(action) => return Ok(action),
        Tokens::Options(given) => given,
    };
    let mut b = match given.iter().find(|g| g.spec.name == "config") {
        Some(g) => json::load(g.value(), host.read)?,
        None => Builder::default(),
    };
    apply(&given, &mut b)?;
    Ok(Action::Run(Box::new(b.build(host.probe)?)))
}

#[cfg(test)]
mod tests;
