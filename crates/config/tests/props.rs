//! Property tests (proptest) of the command line and `-config` JSON parsers: what the fuzz
//! targets (fuzz/: cmdline, json_config) check for hours, run for a few seconds in CI. For any
//! input: no panic, and what is accepted passes validation.

use proptest::prelude::*;
use serde_json::{json, Value};

/// A path that exists on every machine, for the options that check existence.
const EXISTING: &str = "/bin/sh";

const OPTIONS: &[&str] = &[
    "-name",
    "-kernel",
    "-append",
    "-initrd",
    "-smp",
    "-m",
    "-qmp",
    "-api-channel",
    "-serial",
    "-D",
    "-pidfile",
    "-daemonize",
    "-disable-seccomp",
    "-omit_vm_memory",
    "-machine",
    "-incoming",
    "-drive",
    "-device",
    "-netdev",
    "-chardev",
    "-h",
    "--help",
    "-V",
    "--kernel",
    "--m=512",
    "-",
    "--",
];

const VALUES: &[&str] = &[
    "",
    "=",
    ",",
    ",,",
    "0",
    "1",
    "255",
    "256",
    "-1",
    "18446744073709551616",
    "512M",
    "2G",
    "0x10",
    "cpus=2",
    "cpus=",
    "stdio",
    "unix:/tmp/sv-prop.sock,server,nowait",
    "unix:",
    "microvm",
    "microvm,dump-guest-core=off",
    "file:/tmp/sv-prop-snap",
    "file:relative",
    "id=rootfs,file=/bin/sh,readonly=off,direct=on,serial=abc",
    "id=rootfs,file=/bin/sh",
    "id=,file=",
    "virtio-blk-device,drive=rootfs",
    "virtio-blk-device,drive=nosuch",
    "tap,id=net0,ifname=tap0",
    "id=net0,netdev=tap0,mac=0e:90:df:9f:a8:88",
    "virtio-net-device,netdev=net0,mac=zz:zz",
    "socket,id=con0,path=/tmp/sv-prop-con.sock,server,nowait",
    "virtconsole,chardev=con0",
    "vhost-vsock-device,id=vsock0,guest-cid=3",
    "vsock,id=v,guest-cid=18446744073709551615",
    "console=ttyS0 reboot=k panic=1",
    EXISTING,
    "/nonexistent/sv-prop",
    "é\u{0}ü",
];

fn arg() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(OPTIONS).prop_map(str::to_string),
        3 => prop::sample::select(VALUES).prop_map(str::to_string),
        1 => any::<String>(),
        1 => "-[a-z_=,-]{0,12}",
    ]
}

fn check_args(args: &[String]) {
    // `-config FILE` reads a file: the JSON tests cover its contents.
    if args.iter().any(|a| a.contains("config")) {
        return;
    }
    if let Ok(config::Action::Run(cfg)) = config::parse_args(args) {
        if let Err(e) = cfg.validate() {
            panic!("parse_args accepted {args:?} but validate refuses it: {e}");
        }
    }
}

/// JSON values shaped like a `-config` file, with odd leaves.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop::sample::select(VALUES).prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

const KEYS: &[&str] = &[
    "boot-source",
    "kernel_image_path",
    "boot_args",
    "initrd_fs_path",
    "machine-config",
    "name",
    "vcpu_count",
    "mem_size",
    "omit_vm_memory",
    "drive",
    "drive_id",
    "path_on_host",
    "read_only",
    "direct",
    "serial_num",
    "net",
    "iface_id",
    "host_dev_name",
    "mac",
    "console",
    "console_id",
    "socket_path",
    "vsock",
    "vsock_id",
    "guest_cid",
    "serial",
    "stdio",
    "unknown",
];

fn json_tree() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..6).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn check_json(text: &str) {
    if let Ok(cfg) = config::parse_json_config(text) {
        if let Err(e) = cfg.validate() {
            panic!("parse_json_config accepted {text:?} but validate refuses it: {e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn command_lines(args in prop::collection::vec(arg(), 0..14)) {
        check_args(&args);
    }

    #[test]
    fn minimal_command_line_plus_noise(extra in prop::collection::vec(arg(), 0..8)) {
        let mut args: Vec<String> = ["-kernel", EXISTING, "-m", "128"].map(String::from).to_vec();
        args.extend(extra);
        check_args(&args);
    }

    #[test]
    fn json_text(text in any::<String>()) {
        check_json(&text);
    }

    #[test]
    fn json_documents(doc in json_tree()) {
        check_json(&doc.to_string());
    }

    #[test]
    fn json_seed_with_one_field_changed(section in prop::sample::select(&["boot-source", "machine-config", "serial"][..]),
                                        key in prop::sample::select(KEYS), value in json_leaf()) {
        let mut doc = json!({
            "boot-source": {"kernel_image_path": EXISTING, "boot_args": "console=ttyS0"},
            "machine-config": {"name": "abc", "vcpu_count": 2, "mem_size": 268435456u64},
            "serial": {"stdio": true}
        });
        doc[section][key] = value;
        check_json(&doc.to_string());
    }
}
