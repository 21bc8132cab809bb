//! Process rules, required values, names, and -config with overrides.

use super::*;

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
