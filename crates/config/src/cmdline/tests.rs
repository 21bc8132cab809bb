//! Command lines from the seeds and SPEC.md, and every command-line error.

use super::*;
use crate::json::tests::{seed_004_vm, SEED_004_JSON};
use crate::model::*;
use std::io;
use std::path::Path;

fn nothing_exists(_: &Path) -> bool {
    false
}

/// Only the seed's `/home/config.json` and two variants of it are readable.
fn fake_read(path: &Path) -> io::Result<String> {
    match path.to_str() {
        Some("/home/config.json") => Ok(SEED_004_JSON.to_string()),
        Some("/omit.json") => {
            Ok(SEED_004_JSON.replace(r#""omit_vm_memory": false"#, r#""omit_vm_memory": true"#))
        }
        Some("/noserial.json") => {
            let serial = "\"serial\": {\n    \"stdio\": true\n  },";
            assert!(SEED_004_JSON.contains(serial));
            Ok(SEED_004_JSON.replace(serial, ""))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        )),
    }
}

const HOST: Host = Host {
    exists: nothing_exists,
    read: fake_read,
};

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn parse(a: &[&str]) -> Result<Action, String> {
    parse_with(&args(a), &HOST).map_err(|e| e.to_string())
}

fn run(a: &[&str]) -> VmConfig {
    match parse(a) {
        Ok(Action::Run(cfg)) => *cfg,
        other => panic!("{a:?}: {other:?}"),
    }
}

fn err(a: &[&str]) -> String {
    match parse(a) {
        Err(e) => {
            assert!(!e.contains('\n'), "{e}");
            e
        }
        Ok(other) => panic!("{a:?} parsed: {other:?}"),
    }
}

/// A valid command line with `extra` appended.
fn run_k(extra: &[&str]) -> VmConfig {
    let mut a = vec!["-kernel", "/k"];
    a.extend_from_slice(extra);
    run(&a)
}

fn err_k(extra: &[&str]) -> String {
    let mut a = vec!["-kernel", "/k"];
    a.extend_from_slice(extra);
    err(&a)
}

fn vm(kernel: &str, cmdline: &str) -> VmConfig {
    VmConfig {
        name: DEFAULT_VM_NAME.into(),
        machine: MachineConfig {
            kind: MachineType::Microvm,
            vcpus: DEFAULT_VCPUS,
            mem_size: DEFAULT_MEM_SIZE,
            omit_vm_memory: false,
        },
        boot: BootSource {
            kernel: kernel.into(),
            cmdline: cmdline.into(),
            initrd: None,
        },
        drives: vec![],
        nets: vec![],
        console: None,
        vsock: None,
        serial: None,
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

fn disk(id: &str, path: &str, read_only: bool, direct: bool, serial: Option<&str>) -> DriveConfig {
    DriveConfig {
        id: id.into(),
        path: path.into(),
        read_only,
        direct,
        serial: serial.map(Into::into),
    }
}

const MAC: [u8; 6] = [0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88];

// ---- the seeds' and SPEC.md's command lines ----

/// Seed 004, "Пример" 2, exactly as printed: -append's words are not quoted.
#[test]
fn seed_004_table_1_example() {
    let cfg = run(&[
        "-kernel",
        "/path/to/vmlinux.bin",
        "-append",
        "console=ttyS0",
        "root=/dev/vda",
        "rw",
        "reboot=k",
        "panic=1",
        "-drive",
        "file=/home/rootfs.ext4,id=rootfs,readonly=false",
        "-api-channel",
        "unix:/tmp/stratovirt.socket",
        "-serial",
        "stdio",
    ]);
    let mut want = vm(
        "/path/to/vmlinux.bin",
        "console=ttyS0 root=/dev/vda rw reboot=k panic=1",
    );
    want.drives = vec![disk("rootfs", "/home/rootfs.ext4", false, true, None)];
    want.qmp = Some(QmpSocketConfig {
        path: "/tmp/stratovirt.socket".into(),
    });
    want.serial = Some(SerialConfig { stdio: true });
    assert_eq!(cfg, want);
}

/// Seed 004 table 1, the older spellings of every row.
#[test]
fn seed_004_table_1_rows() {
    let cfg = run(&[
        "-name",
        "VMName",
        "-kernel",
        "/path/to/vmlinux.bin",
        "-append",
        "console=ttyS0 root=/dev/vda reboot=k panic=1",
        "-initrd",
        "/path/to/initrd.img",
        "-smp",
        "cpus=4",
        "-m",
        "805306368",
        "-drive",
        "id=rootfs,file=/path/to/rootfs,readonly=false,direct=true,serial=serial_num",
        "-netdev",
        "id=iface_id,netdev=tap0,mac=0e:90:df:9f:a8:88",
        "-chardev",
        "id=console_id,path=/path/to/socket",
        "-device",
        "vsock,id=vsock_id,guest-cid=3",
        "-api-channel",
        "unix:/path/to/api.socket",
        "-serial",
        "stdio",
        "-D",
        "/path/to/logfile",
        "-disable-seccomp",
        "-omit_vm_memory",
    ]);
    let mut want = vm(
        "/path/to/vmlinux.bin",
        "console=ttyS0 root=/dev/vda reboot=k panic=1",
    );
    want.name = "VMName".into();
    want.boot.initrd = Some("/path/to/initrd.img".into());
    want.machine.vcpus = 4;
    want.machine.mem_size = 768 << 20;
    want.machine.omit_vm_memory = true;
    want.drives = vec![disk(
        "rootfs",
        "/path/to/rootfs",
        false,
        true,
        Some("serial_num"),
    )];
    want.nets = vec![NetConfig {
        id: "iface_id".into(),
        host_dev_name: "tap0".into(),
        mac: Some(MAC),
    }];
    want.console = Some(ConsoleConfig {
        id: "console_id".into(),
        socket_path: "/path/to/socket".into(),
    });
    want.vsock = Some(VsockConfig {
        id: "vsock_id".into(),
        guest_cid: 3,
    });
    want.qmp = Some(QmpSocketConfig {
        path: "/path/to/api.socket".into(),
    });
    want.serial = Some(SerialConfig { stdio: true });
    want.process.log_file = Some(Some("/path/to/logfile".into()));
    want.process.seccomp = false;
    assert_eq!(cfg, want);
}

/// Seed 004 table 3 / seeds 000, 001: `-config` with `-api-channel`.
#[test]
fn seed_004_json_example_with_api_channel() {
    let cfg = run(&[
        "-config",
        "/home/config.json",
        "-api-channel",
        "unix:/tmp/stratovirt.socket",
    ]);
    let mut want = seed_004_vm();
    want.qmp = Some(QmpSocketConfig {
        path: "/tmp/stratovirt.socket".into(),
    });
    assert_eq!(cfg, want);
}

/// Seed 003, "Creating and Starting a VM": `-config` with `-qmp unix:...`.
#[test]
fn seed_003_json_example_with_qmp() {
    let cfg = run(&[
        "-config",
        "/home/config.json",
        "-qmp",
        "unix:/path/to/socket",
    ]);
    let mut want = seed_004_vm();
    want.qmp = Some(QmpSocketConfig {
        path: "/path/to/socket".into(),
    });
    assert_eq!(cfg, want);
}

/// Seed 003, "Restoring a VM": the VM the snapshot is taken from...
#[test]
fn seed_003_snapshot_source() {
    let cfg = run(&[
        "-machine",
        "microvm",
        "-kernel",
        "/path/to/kernel",
        "-smp",
        "1",
        "-m",
        "1024",
        "-append",
        "console=ttyS0 pci=off reboot=k quiet panic=1 root=/dev/vda",
        "-drive",
        "file=/path/to/rootfs,id=rootfs,readonly=off,direct=off",
        "-device",
        "virtio-blk-device,drive=rootfs",
        "-qmp",
        "unix:/path/to/socket,server,nowait",
        "-serial",
        "stdio",
    ]);
    let mut want = vm(
        "/path/to/kernel",
        "console=ttyS0 pci=off reboot=k quiet panic=1 root=/dev/vda",
    );
    want.machine.vcpus = 1;
    want.machine.mem_size = 1 << 30;
    want.drives = vec![disk("rootfs", "/path/to/rootfs", false, false, None)];
    want.qmp = Some(QmpSocketConfig {
        path: "/path/to/socket".into(),
    });
    want.serial = Some(SerialConfig { stdio: true });
    assert_eq!(cfg, want);
}

/// ...and the VM restored from it.
#[test]
fn seed_003_snapshot_restore() {
    let cfg = run(&[
        "-machine",
        "microvm",
        "-kernel",
        "/path/to/kernel",
        "-smp",
        "1",
        "-m",
        "1024",
        "-append",
        "console=ttyS0 pci=off reboot=k quiet panic=1 root=/dev/vda",
        "-drive",
        "file=/path/to/rootfs,id=rootfs,readonly=off,direct=off",
        "-device",
        "virtio-blk-device,drive=rootfs",
        "-qmp",
        "unix:/path/to/another_socket,server,nowait",
        "-serial",
        "stdio",
        "-incoming",
        "file:/path/to/template",
    ]);
    let mut want = vm(
        "/path/to/kernel",
        "console=ttyS0 pci=off reboot=k quiet panic=1 root=/dev/vda",
    );
    want.machine.vcpus = 1;
    want.machine.mem_size = 1 << 30;
    want.drives = vec![disk("rootfs", "/path/to/rootfs", false, false, None)];
    want.qmp = Some(QmpSocketConfig {
        path: "/path/to/another_socket".into(),
    });
    want.serial = Some(SerialConfig { stdio: true });
    want.incoming = Some("/path/to/template".into());
    assert_eq!(cfg, want);
}

/// SPEC.md §1's command line, every option at once.
fn spec_example(qmp: [&'static str; 2], serial: bool) -> Vec<&'static str> {
    let mut a = vec![
        "-name",
        "VM",
        "-kernel",
        "vmlinux.bin",
        "-append",
        "console=ttyS0 root=/dev/vda reboot=k panic=1",
        "-initrd",
        "initrd.img",
        "-smp",
        "2",
        "-m",
        "512",
        "-drive",
        "id=rootfs,file=rootfs.ext4,readonly=off,direct=on,serial=abc",
        "-device",
        "virtio-blk-device,drive=rootfs",
        "-netdev",
        "tap,id=net0,ifname=tap0",
        "-device",
        "virtio-net-device,netdev=net0,mac=0e:90:df:9f:a8:88",
        "-chardev",
        "socket,id=con0,path=/tmp/console.sock,server,nowait",
        "-device",
        "virtconsole,chardev=con0",
        "-device",
        "vhost-vsock-device,id=vsock0,guest-cid=3",
        qmp[0],
        qmp[1],
    ];
    if serial {
        a.extend(["-serial", "stdio"]);
    }
    a.extend([
        "-D",
        "/tmp/vm.log",
        "-pidfile",
        "/tmp/vm.pid",
        "-daemonize",
        "-disable-seccomp",
        "-omit_vm_memory",
        "-machine",
        "microvm",
        "-incoming",
        "file:/path/to/template",
    ]);
    a
}

fn spec_vm() -> VmConfig {
    let mut want = vm(
        "vmlinux.bin",
        "console=ttyS0 root=/dev/vda reboot=k panic=1",
    );
    want.name = "VM".into();
    want.boot.initrd = Some("initrd.img".into());
    want.machine.vcpus = 2;
    want.machine.mem_size = 512 << 20;
    want.machine.omit_vm_memory = true;
    want.drives = vec![disk("rootfs", "rootfs.ext4", false, true, Some("abc"))];
    want.nets = vec![NetConfig {
        id: "net0".into(),
        host_dev_name: "tap0".into(),
        mac: Some(MAC),
    }];
    want.console = Some(ConsoleConfig {
        id: "con0".into(),
        socket_path: "/tmp/console.sock".into(),
    });
    want.vsock = Some(VsockConfig {
        id: "vsock0".into(),
        guest_cid: 3,
    });
    want.qmp = Some(QmpSocketConfig {
        path: "/tmp/vm.sock".into(),
    });
    want.process = ProcessConfig {
        log_file: Some(Some("/tmp/vm.log".into())),
        pidfile: Some("/tmp/vm.pid".into()),
        daemonize: true,
        seccomp: false,
    };
    want.incoming = Some("/path/to/template".into());
    want
}

#[test]
fn spec_example_command_line() {
    // SPEC.md lists -serial stdio and -daemonize together; a daemon has no
    // terminal, so that pair is refused, as QEMU does.
    assert_eq!(
        err(&spec_example(
            ["-qmp", "unix:/tmp/vm.sock,server,nowait"],
            true
        )),
        "-daemonize: cannot be used with -serial stdio (a daemon has no terminal)"
    );
    let cfg = run(&spec_example(
        ["-qmp", "unix:/tmp/vm.sock,server,nowait"],
        false,
    ));
    assert_eq!(cfg, spec_vm());
    let cfg = run(&spec_example(["-api-channel", "unix:/tmp/vm.sock"], false));
    assert_eq!(cfg, spec_vm());
}

#[test]
fn spec_example_with_serial_and_no_daemon() {
    let mut a = spec_example(["-qmp", "unix:/tmp/vm.sock,server,nowait"], true);
    let at = a.iter().position(|s| *s == "-pidfile").unwrap();
    a.drain(at..at + 3); // -pidfile /tmp/vm.pid -daemonize
    let cfg = run(&a);
    let mut want = spec_vm();
    want.serial = Some(SerialConfig { stdio: true });
    want.process.pidfile = None;
    want.process.daemonize = false;
    assert_eq!(cfg, want);
}

/// SPEC.md §1's second form, with seed 004 table 3's process options. The
/// seed's file asks for a serial port on stdio, which a daemon can't have, so
/// this uses the seed's file without its "serial" member.
#[test]
fn spec_example_config_form() {
    let cfg = run(&[
        "-config",
        "/noserial.json",
        "-api-channel",
        "unix:/tmp/vm.sock",
        "-D",
        "log",
        "-pidfile",
        "f",
        "-daemonize",
        "-disable-seccomp",
    ]);
    let mut want = seed_004_vm();
    want.serial = None;
    want.qmp = Some(QmpSocketConfig {
        path: "/tmp/vm.sock".into(),
    });
    want.process = ProcessConfig {
        log_file: Some(Some("log".into())),
        pidfile: Some("f".into()),
        daemonize: true,
        seccomp: false,
    };
    assert_eq!(cfg, want);
}

// ---- help and version ----

#[test]
fn help_and_version() {
    for h in ["-h", "-help", "--help"] {
        assert_eq!(parse(&[h]), Ok(Action::Help(usage())));
        // Even after other options, and before a bad one.
        assert_eq!(
            parse(&["-smp", "2", h, "-bogus"]),
            Ok(Action::Help(usage()))
        );
    }
    for v in ["-V", "-version", "--version"] {
        assert_eq!(parse(&[v]), Ok(Action::Version(version())));
    }
    assert!(version().starts_with("StratoVirt "));
}

// ---- tokenizer ----

#[test]
fn double_dash_spellings() {
    let cfg = run(&[
        "--kernel",
        "/k",
        "--smp",
        "2",
        "--m=1G",
        "--name=vm1",
        "--serial",
        "stdio",
    ]);
    assert_eq!(cfg.machine.vcpus, 2);
    assert_eq!(cfg.machine.mem_size, 1 << 30);
    assert_eq!(cfg.name, "vm1");
    assert_eq!(
        err(&["--kernel", "/k", "--smp", "0"]),
        "--smp: vCPU count 0 is out of range 1..=254"
    );
    assert_eq!(err(&["--daemonize=on"]), "--daemonize: takes no value");
}

#[test]
fn unknown_and_unexpected_arguments() {
    assert_eq!(err_k(&["-bogus"]), "-bogus: unknown option (see -help)");
    assert_eq!(
        err_k(&["--bogus", "1"]),
        "--bogus: unknown option (see -help)"
    );
    assert_eq!(err_k(&["-m=512M"]), "-m=512M: unknown option (see -help)");
    assert_eq!(
        err_k(&["stray"]),
        "unexpected argument `stray` (options start with '-', see -help)"
    );
    assert_eq!(
        err_k(&["-smp", "2", "3"]),
        "unexpected argument `3` (options start with '-', see -help)"
    );
    assert!(err_k(&["-"]).starts_with("unexpected argument `-`"));
}

#[test]
fn missing_values() {
    for opt in [
        "-name",
        "-kernel",
        "-append",
        "-initrd",
        "-smp",
        "-m",
        "-drive",
        "-netdev",
        "-chardev",
        "-device",
        "-api-channel",
        "-qmp",
        "-serial",
        "-pidfile",
        "-config",
        "-machine",
        "-incoming",
    ] {
        assert_eq!(
            err_k(&[opt]),
            format!("{opt}: missing value"),
            "{opt} at the end"
        );
        assert_eq!(
            err_k(&[opt, "-disable-seccomp"]),
            format!("{opt}: missing value"),
            "{opt} before an option"
        );
    }
    assert_eq!(err(&["-kernel", "-m", "512"]), "-kernel: missing value");
    assert_eq!(err_k(&["-smp", ""]), "-smp: missing value");
}

#[test]
fn duplicated_options() {
    assert_eq!(
        err_k(&["-smp", "1", "-smp", "2"]),
        "-smp: given more than once"
    );
    assert_eq!(
        err_k(&["-m", "1G", "--m", "2G"]),
        "--m: given more than once"
    );
    assert_eq!(
        err(&["-kernel", "/a", "-kernel", "/b"]),
        "-kernel: given more than once"
    );
    assert_eq!(err_k(&["-D", "-D"]), "-D: given more than once");
    assert_eq!(
        err_k(&["-qmp", "unix:/a", "-qmp", "unix:/b"]),
        "-qmp: given more than once"
    );
    // Flags may repeat.
    assert!(
        !run_k(&["-disable-seccomp", "-disable-seccomp"])
            .process
            .seccomp
    );
}

#[test]
fn append_joins_words_up_to_the_next_option() {
    let cfg = run_k(&[
        "-append",
        "console=ttyS0",
        "root=/dev/vda",
        "rw",
        "-smp",
        "2",
    ]);
    assert_eq!(cfg.boot.cmdline, "console=ttyS0 root=/dev/vda rw");
    assert_eq!(run_k(&["-append", ""]).boot.cmdline, "");
    assert_eq!(
        run_k(&["--append=quiet", "panic=1"]).boot.cmdline,
        "quiet panic=1"
    );
}

#[test]
fn log_option_with_and_without_file() {
    assert_eq!(
        run_k(&["-D", "/tmp/x.log"]).process.log_file,
        Some(Some("/tmp/x.log".into()))
    );
    assert_eq!(run_k(&["-D"]).process.log_file, Some(None));
    assert_eq!(run(&["-D", "-kernel", "/k"]).process.log_file, Some(None));
    assert_eq!(run(&["-D", "--kernel", "/k"]).process.log_file, Some(None));
    assert_eq!(run_k(&["--D=/l"]).process.log_file, Some(Some("/l".into())));
    assert_eq!(run_k(&[]).process.log_file, None);
    assert_eq!(err_k(&["--D="]), "--D: log file path is empty");
    assert_eq!(err_k(&["-D", ""]), "-D: log file path is empty");
}

// ---- -m, -smp, -machine ----

#[test]
fn memory_table() {
    let m = |v: &str| run_k(&["-m", v]).machine.mem_size;
    assert_eq!(m("1024"), 1 << 30);
    assert_eq!(m("512M"), 512 << 20);
    assert_eq!(m("512MiB"), 512 << 20);
    assert_eq!(m("512m"), 512 << 20);
    assert_eq!(m("2G"), 2 << 30);
    assert_eq!(m("2g"), 2 << 30);
    assert_eq!(m("2GiB"), 2 << 30);
    assert_eq!(m("134217728"), 128 << 20);
    assert_eq!(m("128"), 128 << 20);
    assert_eq!(m("524288"), 512 << 30);
    assert_eq!(m("512G"), 512 << 30);
    assert_eq!(m("size=512M"), 512 << 20);
    assert_eq!(m("131072K"), 128 << 20);
    assert!(err_k(&["-m", "127"]).starts_with("-m: memory size 127 is out of range"));
    assert!(err_k(&["-m", "100000000"]).starts_with("-m: memory size 100000000 is out of range"));
    assert_eq!(
        err_k(&["-m", "127M"]),
        "-m: memory size 127 MiB is out of range 128 MiB..=512 GiB"
    );
    assert_eq!(
        err_k(&["-m", "513G"]),
        "-m: memory size 513 GiB is out of range 128 MiB..=512 GiB"
    );
    assert_eq!(
        err_k(&["-m", "134217729"]),
        "-m: memory size 134217729 bytes is not a multiple of 4 KiB"
    );
    assert_eq!(
        err_k(&["-m", "512X"]),
        "-m: `512X` has an unknown size suffix (use K, M, G or KiB, MiB, GiB)"
    );
}

#[test]
fn smp_forms() {
    let n = |v: &str| run_k(&["-smp", v]).machine.vcpus;
    assert_eq!(n("1"), 1);
    assert_eq!(n("254"), 254);
    assert_eq!(n("cpus=4"), 4);
    assert_eq!(n("4,maxcpus=4"), 4);
    assert_eq!(n("cpus=4,sockets=2,cores=2,threads=1"), 4);
    assert_eq!(n("sockets=1,cores=2,threads=2"), 4);
    assert_eq!(n("maxcpus=3"), 3);
    assert_eq!(
        err_k(&["-smp", "0"]),
        "-smp: vCPU count 0 is out of range 1..=254"
    );
    assert_eq!(
        err_k(&["-smp", "255"]),
        "-smp: vCPU count 255 is out of range 1..=254"
    );
    assert_eq!(
        err_k(&["-smp", "300"]),
        "-smp: vCPU count 300 is out of range 1..=254"
    );
    assert_eq!(
        err_k(&["-smp", "99999999999999999999"]),
        "-smp: vCPU count `99999999999999999999` is too large"
    );
    assert_eq!(
        err_k(&["-smp", "abc"]),
        "-smp: vCPU count `abc` is not a number"
    );
    assert_eq!(
        err_k(&["-smp", "cpus=abc"]),
        "-smp: cpus `abc` is not a number"
    );
    assert_eq!(
        err_k(&["-smp", "-1"]),
        "-smp: vCPU count `-1` is not a number"
    );
    assert_eq!(
        err_k(&["-smp", "2,cpus=2"]),
        "-smp: give the vCPU count once (N or cpus=N)"
    );
    assert_eq!(
        err_k(&["-smp", "2,maxcpus=4"]),
        "-smp: maxcpus=4 must equal the vCPU count 2 (vCPU hot-plug is not supported)"
    );
    assert_eq!(
        err_k(&["-smp", "4,sockets=3"]),
        "-smp: sockets*dies*clusters*cores*threads is 3, it must equal the vCPU count 4"
    );
    assert!(err_k(&["-smp", "2,numa=1"]).starts_with("-smp: unknown key `numa`"));
}

#[test]
fn machine_forms() {
    assert!(!run_k(&["-machine", "microvm"]).machine.omit_vm_memory);
    assert!(!run_k(&["-machine", "type=microvm"]).machine.omit_vm_memory);
    assert!(
        run_k(&["-machine", "type=microvm,dump-guest-core=off"])
            .machine
            .omit_vm_memory
    );
    assert!(
        run_k(&["-machine", "microvm,dump-guest-core=off"])
            .machine
            .omit_vm_memory
    );
    assert!(
        !run_k(&["-machine", "microvm,dump-guest-core=on"])
            .machine
            .omit_vm_memory
    );
    assert!(run_k(&["-machine", "microvm,accel=kvm"]).machine.kind == MachineType::Microvm);
    assert!(
        run_k(&["-machine", "microvm,dump-guest-core=off", "-omit_vm_memory"])
            .machine
            .omit_vm_memory
    );
    assert_eq!(
        err_k(&["-machine", "q35"]),
        "-machine: machine type `q35` is not supported (supported: microvm)"
    );
    assert_eq!(
        err_k(&["-machine", "type=virt"]),
        "-machine: machine type `virt` is not supported (supported: microvm)"
    );
    assert_eq!(
        err_k(&["-machine", "microvm,accel=tcg"]),
        "-machine: accel `tcg` is not supported (supported: kvm)"
    );
    assert_eq!(
        err_k(&["-machine", "microvm,dump-guest-core=on", "-omit_vm_memory"]),
        "-omit_vm_memory: conflicts with -machine dump-guest-core=on"
    );
    assert!(err_k(&["-machine", "microvm,mem-share=on"])
        .starts_with("-machine: unknown key `mem-share`"));
}

// ---- devices ----

#[test]
fn current_disk_spelling_and_order() {
    let cfg = run_k(&[
        "-device",
        "virtio-blk-device,drive=data,id=vdb",
        "-drive",
        "file=/rootfs,id=rootfs,readonly=on,direct=off,if=none,format=raw",
        "-drive",
        "file=/data,id=data",
        "-device",
        "virtio-blk-mmio,drive=rootfs",
    ]);
    assert_eq!(
        cfg.drives,
        vec![
            disk("rootfs", "/rootfs", true, false, None),
            disk("data", "/data", false, true, None),
        ]
    );
    assert_eq!(
        err_k(&[
            "-drive",
            "file=/r,id=rootfs",
            "-device",
            "virtio-blk-device,drive=root"
        ]),
        "-device: drive=root names no -drive"
    );
    assert_eq!(err_k(&["-drive", "id=rootfs"]), "-drive: missing file=PATH");
    assert_eq!(
        err_k(&["-drive", "file=/r,id=r,format=qcow2"]),
        "-drive: format=qcow2 is not supported (supported: raw)"
    );
}

#[test]
fn current_nic_spelling() {
    let cfg = run_k(&[
        "-netdev",
        "tap,id=net0,ifname=tap0",
        "-device",
        "virtio-net-device,netdev=net0,mac=0e:90:df:9f:a8:88,id=nic0",
        "-netdev",
        "tap,id=net1,ifname=tap1,mac=0e:90:df:9f:a8:89",
        "-device",
        "virtio-net-mmio,netdev=net1",
    ]);
    assert_eq!(cfg.nets.len(), 2);
    assert_eq!(cfg.nets[0].mac, Some(MAC));
    assert_eq!(cfg.nets[1].host_dev_name, "tap1");
    assert_eq!(cfg.nets[1].mac, Some([0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x89]));
    assert_eq!(
        err_k(&[
            "-netdev",
            "tap,id=net0,ifname=tap0",
            "-device",
            "virtio-net-device,netdev=net0,mac=0e:90:df"
        ]),
        "-device: bad MAC address `0e:90:df` (expected six hex bytes like 0e:90:df:9f:a8:88)"
    );
}

#[test]
fn console_spellings() {
    let want = Some(ConsoleConfig {
        id: "con0".into(),
        socket_path: "/tmp/console.sock".into(),
    });
    for chardev in [
        "socket,id=con0,path=/tmp/console.sock,server,nowait",
        "socket,id=con0,path=/tmp/console.sock,server=on,wait=off",
        "socket,id=con0,path=/tmp/console.sock",
        "id=con0,path=/tmp/console.sock",
    ] {
        let cfg = run_k(&[
            "-device",
            "virtio-serial-device",
            "-chardev",
            chardev,
            "-device",
            "virtconsole,chardev=con0",
        ]);
        assert_eq!(cfg.console, want, "{chardev}");
        assert_eq!(run_k(&["-chardev", chardev]).console, want, "{chardev}");
    }
}

#[test]
fn vsock_spellings() {
    for dev in [
        "vsock,id=vsock_id,guest-cid=3",
        "vhost-vsock-device,id=vsock_id,guest-cid=3",
    ] {
        let cfg = run_k(&["-device", dev]);
        assert_eq!(
            cfg.vsock,
            Some(VsockConfig {
                id: "vsock_id".into(),
                guest_cid: 3
            })
        );
    }
    assert_eq!(
        run_k(&["-device", "vsock,id=v,guest-cid=4294967294"])
            .vsock
            .unwrap()
            .guest_cid,
        4294967294
    );
    assert_eq!(
        err_k(&["-device", "vsock,id=v,guest-cid=2"]),
        "-device: guest-cid 2 is out of range 3..=4294967294"
    );
    assert_eq!(
        err_k(&["-device", "vsock,id=v,guest-cid=4294967296"]),
        "-device: guest-cid 4294967296 is out of range 3..=4294967294"
    );
}

#[test]
fn device_limits() {
    let mut a: Vec<String> = vec![];
    for i in 0..6 {
        a.extend(["-drive".into(), format!("id=d{i},file=/d{i}")]);
    }
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    assert_eq!(run_k(&refs).drives.len(), 6);
    a.extend(["-drive".into(), "id=d6,file=/d6".into()]);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    assert_eq!(err_k(&refs), "-drive: at most 6 disks are supported, got 7");

    let nics = [
        "-netdev",
        "tap,id=a,ifname=tap0",
        "-netdev",
        "id=b,netdev=tap1",
    ];
    assert_eq!(run_k(&nics).nets.len(), 2);
    let mut three = nics.to_vec();
    three.extend(["-netdev", "tap,id=c,ifname=tap2"]);
    assert_eq!(
        err_k(&three),
        "-netdev: at most 2 NICs are supported, got 3"
    );
    assert_eq!(
        err_k(&[
            "-netdev",
            "tap,id=a,ifname=tap0",
            "-netdev",
            "tap,id=a,ifname=tap1"
        ]),
        "-netdev: duplicate NIC id `a`"
    );
    assert_eq!(
        err_k(&["-drive", "id=a,file=/a", "-drive", "id=a,file=/b"]),
        "-drive: duplicate drive id `a`"
    );
    // Console and vsock: the two devices allowed besides disks and NICs.
    let cfg = run_k(&[
        "-chardev",
        "id=c,path=/c.sock",
        "-device",
        "vsock,id=v,guest-cid=3",
    ]);
    assert!(cfg.console.is_some() && cfg.vsock.is_some());
}

// ---- sockets, serial, incoming ----

#[test]
fn qmp_spellings() {
    let path = |a: &[&str]| run_k(a).qmp.map(|q| q.path);
    let want = Some(PathBuf::from("/tmp/vm.sock"));
    assert_eq!(path(&["-qmp", "unix:/tmp/vm.sock,server,nowait"]), want);
    assert_eq!(
        path(&["-qmp", "unix:/tmp/vm.sock,server=on,wait=off"]),
        want
    );
    assert_eq!(path(&["-qmp", "unix:/tmp/vm.sock,server,wait=on"]), want);
    assert_eq!(path(&["-qmp", "unix:/tmp/vm.sock"]), want);
    assert_eq!(path(&["-api-channel", "unix:/tmp/vm.sock"]), want);
    assert_eq!(
        path(&["-qmp", "unix:/tmp/a,,b.sock,server"]),
        Some("/tmp/a,b.sock".into())
    );
    assert_eq!(path(&[]), None);
    assert_eq!(
        err_k(&["-qmp", "tcp:127.0.0.1:4444,server,nowait"]),
        "-qmp: only unix:PATH is supported, got `tcp:127.0.0.1:4444`"
    );
    assert_eq!(
        err_k(&["-api-channel", "/tmp/vm.sock"]),
        "-api-channel: only unix:PATH is supported, got `/tmp/vm.sock`"
    );
    assert_eq!(
        err_k(&["-qmp", "unix:/a,server=off"]),
        "-qmp: server=off is not supported (the socket is always a server)"
    );
    assert_eq!(
        err_k(&["-qmp", "unix:/a", "-api-channel", "unix:/b"]),
        "-api-channel: cannot be used together with -qmp (one QMP socket)"
    );
    assert_eq!(err_k(&["-qmp", "unix:"]), "-qmp: socket path is empty");
    assert!(err_k(&["-qmp", "unix:/a,foo"]).starts_with("-qmp: unknown key `foo`"));
    let long = format!("unix:/{}", "x".repeat(107));
    assert_eq!(
        err_k(&["-qmp", &long]),
        "-qmp: socket path is 108 bytes long, the limit is 107"
    );
    let ok = format!("unix:/{}", "x".repeat(106));
    assert!(run_k(&["-qmp", &ok]).qmp.is_some());
}

#[test]
fn serial_values() {
    assert_eq!(
        run_k(&["-serial", "stdio"]).serial,
        Some(SerialConfig { stdio: true })
    );
    assert_eq!(
        err_k(&["-serial", "pty"]),
        "-serial: `pty` is not supported (supported: stdio)"
    );
    assert!(err_k(&["-serial", "none"]).contains("supported: stdio"));
}

#[test]
fn incoming_values() {
    assert_eq!(
        run_k(&["-incoming", "file:/snap"]).incoming,
        Some("/snap".into())
    );
    assert_eq!(
        err_k(&["-incoming", "file:snap"]),
        "-incoming: snapshot path `snap` must be absolute (file:/abs/dir)"
    );
    assert_eq!(
        err_k(&["-incoming", "tcp:0:4444"]),
        "-incoming: only file:/abs/dir is supported, got `tcp:0:4444`"
    );
}

// ---- process rules ----

#[test]
fn pidfile_and_daemonize_rules() {
    let cfg = run_k(&["-pidfile", "/tmp/p.pid", "-daemonize"]);
    assert_eq!(cfg.process.pidfile, Some("/tmp/p.pid".into()));
    assert!(cfg.process.daemonize);
    assert_eq!(
        err_k(&["-pidfile", "/tmp/p.pid"]),
        "-pidfile: must be used together with -daemonize"
    );
    assert_eq!(err_k(&["-daemonize"]), "-daemonize: needs -pidfile");
    assert_eq!(
        err_k(&["-daemonize", "-pidfile", "/p", "-serial", "stdio"]),
        "-daemonize: cannot be used with -serial stdio (a daemon has no terminal)"
    );
    assert_eq!(
        err_k(&["-pidfile", "", "-daemonize"]),
        "-pidfile: pidfile path is empty"
    );
}

#[test]
fn kernel_is_required_and_paths_not_empty() {
    assert_eq!(
        err(&["-smp", "1"]),
        "-kernel: a kernel image is required (-kernel or boot-source.kernel_image_path)"
    );
    assert_eq!(
        err(&["-kernel", ""]),
        "-kernel: a kernel image is required (-kernel or boot-source.kernel_image_path)"
    );
    assert_eq!(err_k(&["-initrd", ""]), "-initrd: initrd path is empty");
    assert_eq!(
        err_k(&["-drive", "id=r,file="]),
        "-drive: drive file path is empty"
    );
    assert_eq!(
        err_k(&["-chardev", "id=c,path="]),
        "-chardev: socket path is empty"
    );
}

#[test]
fn name_limits() {
    assert_eq!(run_k(&["-name", "a"]).name, "a");
    let n255 = "é".repeat(255);
    assert_eq!(run_k(&["-name", &n255]).name, n255);
    assert_eq!(
        err_k(&["-name", &"a".repeat(256)]),
        "-name: VM name must be 1..=255 characters long, got 256"
    );
    assert_eq!(
        err_k(&["-name", ""]),
        "-name: VM name must be 1..=255 characters long, got 0"
    );
}

// ---- -config with overrides ----

#[test]
fn command_line_overrides_the_file() {
    let cfg = run(&[
        "-config",
        "/home/config.json",
        "-smp",
        "4",
        "-m",
        "1G",
        "-name",
        "override",
        "-kernel",
        "/other/vmlinux",
        "-append",
        "console=ttyS0 quiet",
        "-drive",
        "id=rootfs,file=/other/rootfs,readonly=on",
        "-drive",
        "id=data,file=/data",
        "-netdev",
        "tap,id=net0,ifname=tap9",
        "-chardev",
        "socket,id=con9,path=/tmp/other.sock,server,nowait",
        "-device",
        "vhost-vsock-device,id=v9,guest-cid=9",
        "-machine",
        "microvm,dump-guest-core=off",
    ]);
    assert_eq!(cfg.machine.vcpus, 4);
    assert_eq!(cfg.machine.mem_size, 1 << 30);
    assert!(cfg.machine.omit_vm_memory);
    assert_eq!(cfg.name, "override");
    assert_eq!(cfg.boot.kernel, Path::new("/other/vmlinux"));
    assert_eq!(cfg.boot.cmdline, "console=ttyS0 quiet");
    assert_eq!(
        cfg.drives,
        vec![
            disk("rootfs", "/other/rootfs", true, true, None),
            disk("data", "/data", false, true, None)
        ]
    );
    assert_eq!(cfg.nets.len(), 1);
    assert_eq!(cfg.nets[0].host_dev_name, "tap9");
    assert_eq!(cfg.console.unwrap().id, "con9");
    assert_eq!(cfg.vsock.unwrap().guest_cid, 9);
    // The file's omit_vm_memory: true is overridden by dump-guest-core=on.
    assert!(
        !run(&[
            "-config",
            "/omit.json",
            "-machine",
            "microvm,dump-guest-core=on"
        ])
        .machine
        .omit_vm_memory
    );
    assert!(run(&["-config", "/omit.json"]).machine.omit_vm_memory);
}

#[test]
fn errors_name_where_the_value_came_from() {
    assert_eq!(
        err(&["-config", "/home/config.json", "-smp", "300"]),
        "-smp: vCPU count 300 is out of range 1..=254"
    );
    assert_eq!(
        err(&["-config", "/home/config.json", "-m", "64M"]),
        "-m: memory size 64 MiB is out of range 128 MiB..=512 GiB"
    );
    assert_eq!(
        err(&[
            "-config",
            "/home/config.json",
            "-netdev",
            "tap,id=x,ifname=tap1",
            "-netdev",
            "tap,id=y,ifname=tap2"
        ]),
        "-netdev: at most 2 NICs are supported, got 3"
    );
    // The file's serial port on stdio is refused with -daemonize.
    assert_eq!(
        err(&[
            "-config",
            "/home/config.json",
            "-pidfile",
            "/p",
            "-daemonize"
        ]),
        "-daemonize: cannot be used with serial.stdio (a daemon has no terminal)"
    );
    assert_eq!(
        err(&["-config", "/missing.json"]),
        "-config /missing.json: cannot read: No such file or directory (os error 2)"
    );
    assert_eq!(
        err(&["-config", "/a.json", "-config", "/b.json"]),
        "-config: given more than once"
    );
}
