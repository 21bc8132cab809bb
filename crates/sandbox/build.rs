//! Compiles the seccomp policy (`seccomp/x86_64.json`) into BPF programs at build time, with
//! `seccompiler`: the binary carries the programs as data and only loads them at run time.
//!
//! The policy file is seccompiler's JSON with three conveniences, expanded here:
//! - named constants (`"val": "KVM_RUN"`, `"FUTEX_WAKE|FUTEX_PRIVATE_FLAG"`) instead of numbers;
//! - `{"syscall": "ioctl", "arg": 1, "one_of": [...]}`: one `eq` rule per value;
//! - groups of rules shared by several thread kinds (`"groups": ["exit"]`).
//!
//! Each thread kind gets an allow-list (`mismatch_action` trap; `SV_SECCOMP_MISMATCH=log` at build
//! time turns it into log, to find missing system calls with the kernel's audit log) and, when
//! it has `errno` rules, a second program that makes those calls fail with an error code (e.g.
//! `clone3` with ENOSYS, so that glibc falls back to `clone`, whose flags can be checked).

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const POLICY: &str = "seccomp/x86_64.json";
const MISMATCH_ENV: &str = "SV_SECCOMP_MISMATCH";
/// The thread kinds the runtime knows (src/seccomp/mod.rs).
const KINDS: [&str; 9] = [
    "main", "vcpu", "qmp", "blk", "net", "console", "vsock", "migrate", "balloon",
];

/// `_IOC(dir, type, nr, size)` on x86_64.
const fn ioc(dir: u64, ty: u64, nr: u64, size: u64) -> u64 {
    (dir << 30) | (size << 16) | (ty << 8) | nr
}
const IOC_NONE: u64 = 0;
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const KVMIO: u64 = 0xae;
const VHOST: u64 = 0xaf;
const TUNTAP: u64 = b'T' as u64;

/// The named constants the policy may use. Structure sizes are x86_64's; the unit tests check
/// the ioctl numbers against `kvm-bindings`.
fn constants() -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        // KVM vCPU ioctls used after start (kvm-ioctls' VcpuFd::run, get_mp_state, get_regs,
        // translate_gva).
        ("KVM_RUN", ioc(IOC_NONE, KVMIO, 0x80, 0)),
        ("KVM_GET_REGS", ioc(IOC_READ, KVMIO, 0x81, 144)),
        ("KVM_TRANSLATE", ioc(IOC_READ | IOC_WRITE, KVMIO, 0x85, 24)),
        ("KVM_GET_MP_STATE", ioc(IOC_READ, KVMIO, 0x98, 4)),
        // TAP devices (linux/if_tun.h): attach by name, ask what a descriptor is, the virtio-net
        // header length, offloads.
        ("TUNSETIFF", ioc(IOC_WRITE, TUNTAP, 202, 4)),
        ("TUNSETOFFLOAD", ioc(IOC_WRITE, TUNTAP, 208, 4)),
        ("TUNSETSNDBUF", ioc(IOC_WRITE, TUNTAP, 212, 4)),
        ("TUNGETIFF", ioc(IOC_READ, TUNTAP, 210, 4)),
        ("TUNSETVNETHDRSZ", ioc(IOC_WRITE, TUNTAP, 216, 4)),
        // vhost (linux/vhost.h): the common device ioctls and vhost-net's backend. Sizes are
        // those of u64, vhost_memory (8, its regions follow), vhost_vring_state (8),
        // vhost_vring_addr (40) and vhost_vring_file (8); the unit tests check them against
        // the vhost crate.
        ("VHOST_GET_FEATURES", ioc(IOC_READ, VHOST, 0x00, 8)),
        ("VHOST_SET_FEATURES", ioc(IOC_WRITE, VHOST, 0x00, 8)),
        ("VHOST_SET_OWNER", ioc(IOC_NONE, VHOST, 0x01, 0)),
        ("VHOST_RESET_OWNER", ioc(IOC_NONE, VHOST, 0x02, 0)),
        ("VHOST_SET_MEM_TABLE", ioc(IOC_WRITE, VHOST, 0x03, 8)),
        ("VHOST_SET_VRING_NUM", ioc(IOC_WRITE, VHOST, 0x10, 8)),
        ("VHOST_SET_VRING_ADDR", ioc(IOC_WRITE, VHOST, 0x11, 40)),
        ("VHOST_SET_VRING_BASE", ioc(IOC_WRITE, VHOST, 0x12, 8)),
        (
            "VHOST_GET_VRING_BASE",
            ioc(IOC_READ | IOC_WRITE, VHOST, 0x12, 8),
        ),
        ("VHOST_SET_VRING_KICK", ioc(IOC_WRITE, VHOST, 0x20, 8)),
        ("VHOST_SET_VRING_CALL", ioc(IOC_WRITE, VHOST, 0x21, 8)),
        ("VHOST_SET_VRING_ERR", ioc(IOC_WRITE, VHOST, 0x22, 8)),
        ("VHOST_NET_SET_BACKEND", ioc(IOC_WRITE, VHOST, 0x30, 8)),
        // vhost-vsock's own: the guest CID (u64), starting and stopping (int).
        ("VHOST_VSOCK_SET_GUEST_CID", ioc(IOC_WRITE, VHOST, 0x60, 8)),
        ("VHOST_VSOCK_SET_RUNNING", ioc(IOC_WRITE, VHOST, 0x61, 4)),
        // What a snapshot reads of a parked vCPU (snapshot/vcpu.rs), and of the VM.
        ("KVM_GET_SREGS", ioc(IOC_READ, KVMIO, 0x83, 312)),
        ("KVM_GET_MSRS", ioc(IOC_READ | IOC_WRITE, KVMIO, 0x88, 8)),
        ("KVM_GET_LAPIC", ioc(IOC_READ, KVMIO, 0x8e, 1024)),
        ("KVM_GET_VCPU_EVENTS", ioc(IOC_READ, KVMIO, 0x9f, 64)),
        ("KVM_GET_DEBUGREGS", ioc(IOC_READ, KVMIO, 0xa1, 128)),
        ("KVM_GET_XSAVE", ioc(IOC_READ, KVMIO, 0xa4, 4096)),
        ("KVM_GET_XCRS", ioc(IOC_READ, KVMIO, 0xa6, 392)),
        (
            "KVM_GET_IRQCHIP",
            ioc(IOC_READ | IOC_WRITE, KVMIO, 0x62, 520),
        ),
        ("KVM_GET_PIT2", ioc(IOC_READ, KVMIO, 0x9f, 112)),
        ("KVM_GET_CLOCK", ioc(IOC_READ, KVMIO, 0x7c, 48)),
        // Terminal (tcgetattr/isatty, tcsetattr TCSANOW) and sockets (set_nonblocking).
        ("TCGETS", 0x5401),
        ("TCSETS", 0x5402),
        ("FIONBIO", 0x5421),
        ("FIOCLEX", 0x5451),
        // fcntl commands.
        ("F_GETFD", 1),
        ("F_SETFD", 2),
        ("F_GETFL", 3),
        ("F_SETFL", 4),
        ("F_DUPFD_CLOEXEC", 1030),
        ("F_OFD_SETLK", 37),
        // futex operations.
        ("FUTEX_WAIT", 0),
        ("FUTEX_WAKE", 1),
        ("FUTEX_REQUEUE", 3),
        ("FUTEX_CMP_REQUEUE", 4),
        ("FUTEX_WAIT_BITSET", 9),
        ("FUTEX_WAKE_BITSET", 10),
        ("FUTEX_PRIVATE_FLAG", 128),
        ("FUTEX_CLOCK_REALTIME", 256),
        // open flags: O_TMPFILE_BIT is __O_TMPFILE (O_TMPFILE without O_DIRECTORY).
        ("O_CREAT", 0o100),
        ("O_TRUNC", 0o1000),
        ("O_TMPFILE_BIT", 0o20000000),
        // Memory.
        ("PROT_EXEC", 4),
        ("MADV_DONTNEED", 4),
        ("MADV_DONTDUMP", 16),
        // prctl.
        ("PR_SET_NAME", 15),
        ("PR_SET_NO_NEW_PRIVS", 38),
        // seccomp(2).
        ("SECCOMP_SET_MODE_FILTER", 1),
        // The flags glibc's pthread_create passes to clone: CLONE_VM | CLONE_FS | CLONE_FILES |
        // CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID |
        // CLONE_CHILD_CLEARTID.
        ("CLONE_VM", 0x100),
        ("CLONE_FS", 0x200),
        ("CLONE_FILES", 0x400),
        ("CLONE_SIGHAND", 0x800),
        ("CLONE_THREAD", 0x10000),
        ("CLONE_SYSVSEM", 0x40000),
        ("CLONE_SETTLS", 0x80000),
        ("CLONE_PARENT_SETTID", 0x100000),
        ("CLONE_CHILD_CLEARTID", 0x200000),
        // Signals.
        ("SIGABRT", 6),
        // glibc's SIGRTMIN (it keeps 32 and 33 for itself): the vCPU kick signal.
        ("SIGRTMIN", 34),
        // send flags.
        ("MSG_DONTWAIT", 0x40),
        ("MSG_NOSIGNAL", 0x4000),
        // Sockets: the family and type a vsock stream is opened with, its shutdown.
        ("AF_UNIX", 1),
        ("SOCK_STREAM", 1),
        ("SHUT_WR", 1),
        // accept4 flags.
        ("SOCK_NONBLOCK", 0o4000),
        ("SOCK_CLOEXEC", 0o2000000),
        // getrandom flags.
        ("GRND_NONBLOCK", 1),
        ("GRND_INSECURE", 4),
        // errno values.
        ("ENOSYS", 38),
        // Clocks.
        ("CLOCK_REALTIME", 0),
        ("CLOCK_MONOTONIC", 1),
    ])
}

fn fail(msg: impl std::fmt::Display) -> ! {
    panic!("{POLICY}: {msg}")
}

/// A number, a constant name, or names joined with `|`.
fn resolve(v: &Value, consts: &BTreeMap<&str, u64>) -> u64 {
    match v {
        Value::Number(n) => n
            .as_u64()
            .unwrap_or_else(|| fail(format!("{n} is not an unsigned integer"))),
        Value::String(s) => s
            .split('|')
            .map(|name| {
                *consts
                    .get(name.trim())
                    .unwrap_or_else(|| fail(format!("unknown constant {name}")))
            })
            .fold(0, |acc, x| acc | x),
        other => fail(format!("{other} is not a value")),
    }
}

/// One condition in seccompiler's form, with its values resolved.
fn condition(c: &Value, consts: &BTreeMap<&str, u64>) -> Value {
    let index = c
        .get("index")
        .unwrap_or_else(|| fail(format!("condition {c} has no index")));
    let ty = c.get("type").cloned().unwrap_or_else(|| json!("dword"));
    let op = match c.get("op") {
        Some(Value::Object(m)) if m.contains_key("masked_eq") => {
            json!({"masked_eq": resolve(&m["masked_eq"], consts)})
        }
        Some(op) => op.clone(),
        None => json!("eq"),
    };
    let val = resolve(
        c.get("val")
            .unwrap_or_else(|| fail(format!("condition {c} has no val"))),
        consts,
    );
    json!({"index": index, "type": ty, "op": op, "val": val})
}

/// Per system call: None = allowed whatever the arguments, Some(list) = allowed when one of
/// the condition lists holds.
type RuleSet = BTreeMap<String, Option<Vec<Vec<Value>>>>;

fn add_rule(set: &mut RuleSet, rule: &Value, consts: &BTreeMap<&str, u64>) {
    let name = rule
        .get("syscall")
        .and_then(Value::as_str)
        .unwrap_or_else(|| fail(format!("rule {rule} names no syscall")))
        .to_string();
    let mut alternatives: Vec<Vec<Value>> = Vec::new();
    if let Some(values) = rule.get("one_of") {
        let arg = rule
            .get("arg")
            .unwrap_or_else(|| fail(format!("rule {rule}: one_of needs arg")));
        let ty = rule.get("type").cloned().unwrap_or_else(|| json!("dword"));
        for v in values
            .as_array()
            .unwrap_or_else(|| fail(format!("rule {rule}: one_of is not a list")))
        {
            alternatives.push(vec![condition(
                &json!({"index": arg, "type": ty, "op": "eq", "val": v}),
                consts,
            )]);
        }
    }
    if let Some(args) = rule.get("args") {
        let conds = args
            .as_array()
            .unwrap_or_else(|| fail(format!("rule {rule}: args is not a list")))
            .iter()
            .map(|c| condition(c, consts))
            .collect::<Vec<_>>();
        if alternatives.is_empty() {
            alternatives.push(conds);
        } else {
            for alt in &mut alternatives {
                alt.extend(conds.iter().cloned());
            }
        }
    }
    let entry = set.entry(name).or_insert_with(|| Some(Vec::new()));
    match (entry.as_mut(), alternatives.is_empty()) {
        // Already unconditional: stays so.
        (None, _) => {}
        (Some(_), true) => *entry = None,
        (Some(list), false) => {
            for alt in alternatives {
                if !list.contains(&alt) {
                    list.push(alt);
                }
            }
        }
    }
}

fn rules_of<'a>(v: &'a Value, what: &str) -> &'a [Value] {
    match v.get("rules") {
        Some(Value::Array(a)) => a,
        None => &[],
        Some(_) => fail(format!("{what}: rules is not a list")),
    }
}

/// seccompiler's JSON filter for `set`.
fn seccompiler_filter(set: &RuleSet, mismatch: Value, on_match: Value) -> Value {
    let mut filter = Vec::new();
    for (name, alts) in set {
        match alts {
            None => filter.push(json!({"syscall": name})),
            Some(list) => {
                for conds in list {
                    filter.push(json!({"syscall": name, "args": conds}));
                }
            }
        }
    }
    json!({"mismatch_action": mismatch, "match_action": on_match, "filter": filter})
}

fn rust_program(out: &mut String, name: &str, prog: &[seccompiler::sock_filter]) {
    writeln!(out, "pub(crate) static {name}: &[sock_filter] = &[").unwrap();
    for i in prog {
        writeln!(
            out,
            "    sock_filter {{ code: {:#06x}, jt: {}, jf: {}, k: {:#010x} }},",
            i.code, i.jt, i.jf, i.k
        )
        .unwrap();
    }
    writeln!(out, "];").unwrap();
}

fn main() {
    println!("cargo:rerun-if-changed={POLICY}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={MISMATCH_ENV}");
    let mismatch = std::env::var(MISMATCH_ENV).unwrap_or_else(|_| "trap".into());
    if !["trap", "log"].contains(&mismatch.as_str()) {
        panic!("{MISMATCH_ENV}={mismatch}: use trap (the default) or log");
    }
    let text = std::fs::read_to_string(POLICY).unwrap_or_else(|e| fail(e));
    let policy: Value = serde_json::from_str(&text).unwrap_or_else(|e| fail(e));
    let consts = constants();
    let empty = Map::new();
    let groups = policy
        .get("groups")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let threads = policy
        .get("threads")
        .and_then(Value::as_object)
        .unwrap_or_else(|| fail("no threads"));
    for name in threads.keys() {
        if !KINDS.contains(&name.as_str()) {
            fail(format!("unknown thread kind {name} (known: {KINDS:?})"));
        }
    }

    let mut compiler_input = Map::new();
    let mut lists = BTreeMap::new();
    for kind in KINDS {
        let t = threads
            .get(kind)
            .unwrap_or_else(|| fail(format!("no policy for thread kind {kind}")));
        let mut set = RuleSet::new();
        for g in t.get("groups").and_then(Value::as_array).unwrap_or(&vec![]) {
            let gname = g
                .as_str()
                .unwrap_or_else(|| fail("group names are strings"));
            let group = groups
                .get(gname)
                .unwrap_or_else(|| fail(format!("{kind}: unknown group {gname}")));
            for r in rules_of(group, gname) {
                add_rule(&mut set, r, &consts);
            }
        }
        for r in rules_of(t, kind) {
            add_rule(&mut set, r, &consts);
        }
        // Calls answered with an error code by the second program must pass the first.
        let mut errno_set = RuleSet::new();
        let mut errno_value = None;
        for r in t.get("errno").and_then(Value::as_array).unwrap_or(&vec![]) {
            let e = resolve(
                r.get("errno")
                    .unwrap_or_else(|| fail(format!("{kind}: {r} has no errno"))),
                &consts,
            );
            if errno_value.is_some_and(|v| v != e) {
                fail(format!("{kind}: errno rules must share one errno value"));
            }
            errno_value = Some(e);
            add_rule(&mut errno_set, r, &consts);
            add_rule(&mut set, r, &consts);
        }
        compiler_input.insert(
            kind.to_string(),
            seccompiler_filter(&set, json!(mismatch), json!("allow")),
        );
        if let Some(e) = errno_value {
            compiler_input.insert(
                format!("{kind}_errno"),
                seccompiler_filter(&errno_set, json!("allow"), json!({ "errno": e })),
            );
        }
        lists.insert(kind, set.keys().cloned().collect::<Vec<_>>());
    }

    let input = serde_json::to_vec(&Value::Object(compiler_input)).unwrap();
    let arch = seccompiler::TargetArch::try_from("x86_64").unwrap();
    let programs = seccompiler::compile_from_json(&input[..], arch)
        .unwrap_or_else(|e| fail(format!("seccompiler: {e}")));

    let mut out = String::new();
    writeln!(
        out,
        "// Generated by build.rs from {POLICY}; do not edit.\n\
         use seccompiler::sock_filter;\n\n\
         /// What a call outside the allow-lists does (trap unless built with {MISMATCH_ENV}=log).\n\
         pub(crate) const MISMATCH: &str = \"{mismatch}\";\n"
    )
    .unwrap();
    for kind in KINDS {
        let up = kind.to_uppercase();
        rust_program(&mut out, &format!("ALLOW_{up}"), &programs[kind]);
        let errno = programs
            .get(&format!("{kind}_errno"))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        rust_program(&mut out, &format!("ERRNO_{up}"), errno);
        writeln!(out, "pub(crate) static SYSCALLS_{up}: &[&str] = &[").unwrap();
        for s in &lists[kind] {
            writeln!(out, "    {s:?},").unwrap();
        }
        writeln!(out, "];\n").unwrap();
    }
    writeln!(out, "pub(crate) static CONSTANTS: &[(&str, u64)] = &[").unwrap();
    for (k, v) in &consts {
        writeln!(out, "    ({k:?}, {v:#x}),").unwrap();
    }
    writeln!(out, "];").unwrap();
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("filters.rs");
    std::fs::write(dest, out).unwrap();
}
