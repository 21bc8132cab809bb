//! The command lines of StratoVirt's documentation (the seeds) and of the full option set, field
//! by field.

use super::*;

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
        ..Default::default()
    }];
    want.console = Some(ConsoleConfig {
        id: "console_id".into(),
        socket_path: "/path/to/socket".into(),
    });
    want.vsock = Some(VsockConfig {
        id: "vsock_id".into(),
        guest_cid: 3,
        uds_path: None,
        vhost_fd: None,
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

/// The documented command line with every option at once.
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
        ..Default::default()
    }];
    want.console = Some(ConsoleConfig {
        id: "con0".into(),
        socket_path: "/tmp/console.sock".into(),
    });
    want.vsock = Some(VsockConfig {
        id: "vsock0".into(),
        guest_cid: 3,
        uds_path: None,
        vhost_fd: None,
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
    // The documented option list has -serial stdio and -daemonize together; a daemon has no
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

/// The documented `-config` form, with seed 004 table 3's process options. The
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
