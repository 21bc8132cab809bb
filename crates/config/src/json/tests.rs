use super::*;
use std::path::Path;

fn nothing_exists(_: &Path, _: crate::validate::Want) -> crate::validate::Occupant {
    crate::validate::Occupant::Nothing
}

/// Seed 004, "Пример" of the JSON configuration, verbatim.
pub(crate) const SEED_004_JSON: &str = r#"{
  "boot-source": {
    "kernel_image_path": "/path/to/vmlinux.bin",
    "boot_args": "console=ttyS0 reboot=k panic=1 pci=off tsc=reliable ipv6.disable=1 root=/dev/vda quiet"
  },
  "machine-config": {
    "name": "abc",
    "vcpu_count": 2,
    "mem_size": 268435456,
    "omit_vm_memory": false
  },
  "drive": [
    {
      "drive_id": "rootfs",
      "path_on_host": "/path/to/rootfs.ext4",
      "direct": true,
      "read_only": false,
      "serial_num": "abcd"
    }
  ],
  "net": [
    {
      "iface_id": "net0",
      "host_dev_name": "tap0",
      "mac": "0e:90:df:9f:a8:88"
    }
  ],
  "console": {
    "console_id": "charconsole0",
    "socket_path": "/path/to/console.socket"
  },
  "serial": {
    "stdio": true
  },
  "vsock": {
    "vsock_id": "vsock-123321132",
    "guest_cid": 4
  }
}

"#;

/// The VM of [`SEED_004_JSON`], field by field.
pub(crate) fn seed_004_vm() -> VmConfig {
    VmConfig {
        name: "abc".into(),
        machine: MachineConfig {
            kind: MachineType::Microvm,
            vcpus: 2,
            topology: None,
            mem_size: 268435456,
            omit_vm_memory: false,
        },
        boot: BootSource {
            kernel: "/path/to/vmlinux.bin".into(),
            cmdline: "console=ttyS0 reboot=k panic=1 pci=off tsc=reliable ipv6.disable=1 root=/dev/vda quiet"
                .into(),
            initrd: None,
        },
        drives: vec![DriveConfig {
            id: "rootfs".into(),
            path: "/path/to/rootfs.ext4".into(),
            read_only: false,
            direct: true,
            serial: Some("abcd".into()),
        }],
        nets: vec![NetConfig {
            id: "net0".into(),
            host_dev_name: "tap0".into(),
            mac: Some([0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88]),
            ..Default::default()
        }],
        console: Some(ConsoleConfig {
            id: "charconsole0".into(),
            socket_path: "/path/to/console.socket".into(),
        }),
        vsock: Some(VsockConfig {
            id: "vsock-123321132".into(),
            guest_cid: 4,
            uds_path: None,
            vhost_fd: None,
        }),
        balloon: None,
        serial: Some(SerialConfig { stdio: true }),
        qmp: None,
        process: ProcessConfig {
            log_file: None,
            pidfile: None,
            daemonize: false,
            seccomp: true,
        },
        incoming: None,
    }
}

fn build(text: &str) -> Result<VmConfig, String> {
    parse(text, "vm.json")
        .and_then(|b| b.build(nothing_exists))
        .map_err(|e| e.to_string())
}

fn err(text: &str) -> String {
    let e = build(text).unwrap_err();
    assert!(!e.contains('\n'), "{e}");
    e
}

const MINIMAL: &str =
    r#"{"boot-source": {"kernel_image_path": "/k", "boot_args": "console=ttyS0"}}"#;

/// MINIMAL plus `extra` top-level members.
fn with(extra: &str) -> String {
    format!(
        r#"{{"boot-source": {{"kernel_image_path": "/k", "boot_args": "console=ttyS0"}}, {extra}}}"#
    )
}

#[test]
fn seed_example_verbatim() {
    assert_eq!(build(SEED_004_JSON).unwrap(), seed_004_vm());
}

#[test]
fn table_2_initrd_and_omit_vm_memory() {
    let cfg = build(
        r#"{"boot-source": {"kernel_image_path": "/path/to/vmlinux.bin",
            "boot_args": "console=ttyS0", "initrd_fs_path": "/path/to/initrd.img"},
           "machine-config": {"name": "abc", "vcpu_count": 4, "mem_size": 805306368, "omit_vm_memory": true}}"#,
    )
    .unwrap();
    assert_eq!(cfg.boot.initrd, Some("/path/to/initrd.img".into()));
    assert_eq!(cfg.machine.vcpus, 4);
    assert_eq!(cfg.machine.mem_size, 768 << 20);
    assert!(cfg.machine.omit_vm_memory);
}

#[test]
fn minimal_file_uses_defaults() {
    let cfg = build(MINIMAL).unwrap();
    assert_eq!(cfg.name, DEFAULT_VM_NAME);
    assert_eq!(cfg.machine.vcpus, DEFAULT_VCPUS);
    assert_eq!(cfg.machine.mem_size, DEFAULT_MEM_SIZE);
    assert!(cfg.drives.is_empty() && cfg.nets.is_empty());
    assert_eq!(cfg.console, None);
    assert_eq!(cfg.serial, None);
}

#[test]
fn drive_flags_default_to_direct_and_writable() {
    let cfg = build(&with(
        r#""drive": [{"drive_id": "rootfs", "path_on_host": "/r"}]"#,
    ))
    .unwrap();
    assert!(!cfg.drives[0].read_only);
    assert!(cfg.drives[0].direct);
    assert_eq!(cfg.drives[0].serial, None);
    let cfg = build(&with(
        r#""drive": [{"drive_id": "a", "path_on_host": "/a", "read_only": true, "direct": false}]"#,
    ))
    .unwrap();
    assert!(cfg.drives[0].read_only);
    assert!(!cfg.drives[0].direct);
}

#[test]
fn null_optional_values_are_absent() {
    let cfg = build(&with(
        r#""net": [{"iface_id": "n", "host_dev_name": "tap0", "mac": null}], "console": null"#,
    ))
    .unwrap();
    assert_eq!(cfg.nets[0].mac, None);
    assert_eq!(cfg.console, None);
}

#[test]
fn serial_stdio_false_means_no_serial() {
    let cfg = build(&with(r#""serial": {"stdio": false}"#)).unwrap();
    assert_eq!(cfg.serial, None);
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    assert_eq!(
        err(&with(r#""bogus": 1"#)),
        "-config: unknown key `bogus` (allowed: boot-source, machine-config, drive, net, console, vsock, balloon, serial)"
    );
    assert_eq!(
        err(&with(r#""machine-config": {"name": "a", "vcpu_count": 1, "mem_size": 134217728, "cpus": 1}"#)),
        "-config: unknown key `machine-config.cpus` (allowed: name, vcpu_count, mem_size, omit_vm_memory)"
    );
    assert!(err(&with(
        r#""drive": [{"drive_id": "a", "path_on_host": "/a", "readonly": true}]"#
    ))
    .starts_with("-config: unknown key `drive[0].readonly` (allowed: drive_id,"));
    assert!(err(r#"{"boot-source": {"kernel": "/k"}}"#)
        .starts_with("-config: unknown key `boot-source.kernel`"));
    assert!(err(&with(r#""serial": {"stdio": true, "pty": true}"#))
        .starts_with("-config: unknown key `serial.pty`"));
    assert!(err(&with(
        r#""vsock": {"vsock_id": "v", "guest_cid": 3, "cid": 3}"#
    ))
    .starts_with("-config: unknown key `vsock.cid`"));
    assert!(err(&with(
        r#""console": {"console_id": "c", "socket_path": "/c", "x": 1}"#
    ))
    .starts_with("-config: unknown key `console.x`"));
    assert!(err(&with(
        r#""net": [{"iface_id": "n", "host_dev_name": "t", "vhost": 1}]"#
    ))
    .starts_with("-config: unknown key `net[0].vhost`"));
}

#[test]
fn wrong_types_name_the_key() {
    assert_eq!(
        err(&with(
            r#""machine-config": {"name": "a", "vcpu_count": "2", "mem_size": 134217728}"#
        )),
        "machine-config.vcpu_count: expected a non-negative integer, got string `2`"
    );
    assert_eq!(
        err(&with(
            r#""machine-config": {"name": "a", "vcpu_count": 1, "mem_size": -1}"#
        )),
        "machine-config.mem_size: expected a non-negative integer, got number -1"
    );
    assert_eq!(
        err(&with(
            r#""machine-config": {"name": "a", "vcpu_count": 1.5, "mem_size": 134217728}"#
        )),
        "machine-config.vcpu_count: expected a non-negative integer, got number 1.5"
    );
    assert_eq!(
        err(&with(
            r#""machine-config": {"name": 7, "vcpu_count": 1, "mem_size": 134217728}"#
        )),
        "machine-config.name: expected a string, got number 7"
    );
    assert_eq!(
        err(&with(r#""drive": {"drive_id": "a", "path_on_host": "/a"}"#)),
        "drive: expected a list, got an object"
    );
    assert_eq!(
        err(&with(
            r#""drive": [{"drive_id": "a", "path_on_host": "/a", "read_only": "false"}]"#
        )),
        "drive[0].read_only: expected true or false, got string `false`"
    );
    assert_eq!(
        err(&with(r#""drive": [1]"#)),
        "drive[0]: expected an object, got number 1"
    );
    assert_eq!(
        err(&with(r#""serial": "stdio""#)),
        "serial: expected an object, got string `stdio`"
    );
    assert_eq!(
        err(&with(r#""vsock": {"vsock_id": "v", "guest_cid": true}"#)),
        "vsock.guest_cid: expected a non-negative integer, got boolean true"
    );
}

#[test]
fn required_keys() {
    assert_eq!(
        err(r#"{"boot-source": {"boot_args": ""}}"#),
        "boot-source.kernel_image_path: required key is missing"
    );
    assert_eq!(
        err(r#"{"boot-source": {"kernel_image_path": "/k"}}"#),
        "boot-source.boot_args: required key is missing"
    );
    assert_eq!(
        err(&with(
            r#""machine-config": {"vcpu_count": 1, "mem_size": 134217728}"#
        )),
        "machine-config.name: required key is missing"
    );
    assert_eq!(
        err(&with(
            r#""machine-config": {"name": "a", "mem_size": 134217728}"#
        )),
        "machine-config.vcpu_count: required key is missing"
    );
    assert_eq!(
        err(&with(r#""machine-config": {"name": "a", "vcpu_count": 1}"#)),
        "machine-config.mem_size: required key is missing"
    );
    assert_eq!(
        err(&with(r#""drive": [{"path_on_host": "/a"}]"#)),
        "drive[0].drive_id: required key is missing"
    );
    assert_eq!(
        err(&with(r#""drive": [{"drive_id": "a"}]"#)),
        "drive[0].path_on_host: required key is missing"
    );
    assert_eq!(
        err(&with(r#""net": [{"iface_id": "n"}]"#)),
        "net[0].host_dev_name: required key is missing"
    );
    assert_eq!(
        err(&with(r#""console": {"console_id": "c"}"#)),
        "console.socket_path: required key is missing"
    );
    assert_eq!(
        err(&with(r#""vsock": {"vsock_id": "v"}"#)),
        "vsock.guest_cid: required key is missing"
    );
    assert_eq!(
        err(&with(r#""serial": {}"#)),
        "serial.stdio: required key is missing"
    );
    assert_eq!(
        err(r#"{"machine-config": {"name": "a", "vcpu_count": 1, "mem_size": 134217728}}"#),
        "-kernel: a kernel image is required (-kernel or boot-source.kernel_image_path)"
    );
}

#[test]
fn bad_mac() {
    assert_eq!(
        err(&with(
            r#""net": [{"iface_id": "n", "host_dev_name": "tap0", "mac": "0e:90:df"}]"#
        )),
        "net[0].mac: bad MAC address `0e:90:df` (expected six hex bytes like 0e:90:df:9f:a8:88)"
    );
}

#[test]
fn limits_name_json_keys() {
    let mc = |v: u64, m: u64| {
        with(&format!(
            r#""machine-config": {{"name": "a", "vcpu_count": {v}, "mem_size": {m}}}"#
        ))
    };
    assert_eq!(build(&mc(254, 512 << 30)).unwrap().machine.vcpus, 254);
    assert_eq!(
        build(&mc(1, 128 << 20)).unwrap().machine.mem_size,
        128 << 20
    );
    assert_eq!(
        err(&mc(255, 1 << 30)),
        "machine-config.vcpu_count: vCPU count 255 is out of range 1..=254"
    );
    assert_eq!(
        err(&mc(0, 1 << 30)),
        "machine-config.vcpu_count: vCPU count 0 is out of range 1..=254"
    );
    assert_eq!(
        err(&mc(1, (128 << 20) - 4096)),
        "machine-config.mem_size: memory size 134213632 bytes is out of range 128 MiB..=512 GiB"
    );
    assert_eq!(
        err(&mc(1, (512 << 30) + 4096)),
        "machine-config.mem_size: memory size 549755817984 bytes is out of range 128 MiB..=512 GiB"
    );
    assert_eq!(
        err(&with(
            r#""machine-config": {"name": "", "vcpu_count": 1, "mem_size": 134217728}"#
        )),
        "machine-config.name: VM name must be 1..=255 characters long, got 0"
    );
    let drives: Vec<String> = (0..7)
        .map(|i| format!(r#"{{"drive_id": "d{i}", "path_on_host": "/d{i}"}}"#))
        .collect();
    assert_eq!(
        err(&with(&format!(r#""drive": [{}]"#, drives.join(",")))),
        "drive[6]: at most 6 disks are supported, got 7"
    );
    assert_eq!(
        err(&with(
            r#""drive": [{"drive_id": "r", "path_on_host": "/a"}, {"drive_id": "r", "path_on_host": "/b"}]"#
        )),
        "drive[1].drive_id: duplicate drive id `r`"
    );
    assert_eq!(
        err(&with(
            r#""drive": [{"drive_id": "r", "path_on_host": "/a"}, {"drive_id": "s", "path_on_host": "/a"}]"#
        )),
        "drive[1].path_on_host: image `/a` is already used by drive `r` (a disk image can back one drive only)"
    );
    assert_eq!(
        err(&with(r#""vsock": {"vsock_id": "v", "guest_cid": 2}"#)),
        "vsock.guest_cid: guest-cid 2 is out of range 3..=4294967294"
    );
    assert_eq!(
        err(&with(r#""drive": [{"drive_id": "r", "path_on_host": ""}]"#)),
        "drive[0].path_on_host: drive file path is empty"
    );
}

#[test]
fn syntax_errors_are_one_line() {
    let e = err("{\n  \"boot-source\": {\n");
    assert!(e.starts_with("-config vm.json: invalid JSON: "), "{e}");
    assert!(e.contains("line 3"), "{e}");
    assert_eq!(
        err("[1]"),
        "-config vm.json: expected a JSON object, got an array"
    );
    assert_eq!(
        err("null"),
        "-config vm.json: expected a JSON object, got null"
    );
}

#[test]
fn load_reports_unreadable_files() {
    fn missing(_: &Path) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory",
        ))
    }
    assert_eq!(
        load("/nope.json", missing).unwrap_err().to_string(),
        "-config /nope.json: cannot read: No such file or directory"
    );
}

#[test]
fn vsock_uds_path_selects_the_userspace_backend() {
    let cfg = build(&with(
        r#""vsock": {"vsock_id": "v", "guest_cid": 3, "uds_path": "/run/v.sock"}"#,
    ))
    .unwrap();
    let v = cfg.vsock.unwrap();
    assert_eq!(v.uds_path.as_deref(), Some(Path::new("/run/v.sock")));
    assert_eq!(v.vhost_fd, None);
    assert_eq!(
        err(&with(
            r#""vsock": {"vsock_id": "v", "guest_cid": 3, "uds_path": 3}"#
        )),
        "vsock.uds_path: expected a string, got number 3"
    );
    assert_eq!(
        err(&with(
            r#""vsock": {"vsock_id": "v", "guest_cid": 3, "uds_path": ""}"#
        )),
        "vsock.uds_path: socket path is empty"
    );
}

#[test]
fn balloon_section() {
    let cfg = build(&with(r#""balloon": {}"#)).unwrap();
    assert_eq!(cfg.balloon, Some(BalloonConfig::default()));
    let cfg = build(&with(
        r#""balloon": {"deflate_on_oom": true, "free_page_reporting": true}"#,
    ))
    .unwrap();
    assert_eq!(
        cfg.balloon,
        Some(BalloonConfig {
            id: None,
            deflate_on_oom: true,
            free_page_reporting: true
        })
    );
    assert_eq!(build(MINIMAL).unwrap().balloon, None);
    assert_eq!(build(&with(r#""balloon": null"#)).unwrap().balloon, None);
    assert_eq!(
        err(&with(r#""balloon": {"deflate_on_oom": "yes"}"#)),
        "balloon.deflate_on_oom: expected true or false, got string `yes`"
    );
    assert!(err(&with(r#""balloon": {"size": 1}"#)).starts_with(
        "-config: unknown key `balloon.size` (allowed: deflate_on_oom, free_page_reporting)"
    ));
    assert_eq!(
        err(&with(
            r#""balloon": {}, "vsock": {"vsock_id": "v", "guest_cid": 3}, "console": {"console_id": "c", "socket_path": "/nonexistent/c.sock"}"#
        )),
        "balloon: at most 2 devices besides disks and NICs are supported, got 3 (console, vsock and balloon count)"
    );
}
