//! Help, version, the tokenizer, -m, -smp and -machine.

use super::*;

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
fn single_dash_with_equals_is_the_same_option() {
    let a = run(&["-kernel=/k", "-m=1G", "-smp=2", "-name=vm1"]);
    let b = run(&["--kernel=/k", "--m=1G", "--smp=2", "--name=vm1"]);
    let c = run(&["-kernel", "/k", "-m", "1G", "-smp", "2", "-name", "vm1"]);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(err(&["-daemonize=on"]), "-daemonize: takes no value");
}

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
    assert_eq!(
        err_k(&["-kernal", "/k"]),
        "-kernal: unknown option (did you mean -kernel? see -help)"
    );
    assert_eq!(
        err_k(&["--smpp=2"]),
        "--smpp=2: unknown option (did you mean --smp? see -help)"
    );
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
        "-m: `512X` has an unknown size suffix (use K, M, G, T or KiB, MiB, GiB, TiB)"
    );
}

#[test]
fn smp_topology_is_carried_and_filled_in_as_qemu_does() {
    let t = |v: &str| {
        let cfg = run_k(&["-smp", v]);
        let t = cfg.machine.topology();
        (cfg.machine.vcpus, t.sockets, t.cores, t.threads)
    };
    assert_eq!(t("4"), (4, 4, 1, 1), "default: one vCPU per socket");
    assert_eq!(t("4,sockets=1,cores=4"), (4, 1, 4, 1));
    assert_eq!(t("4,cores=2"), (4, 2, 2, 1), "sockets filled in");
    assert_eq!(t("8,sockets=2,threads=2"), (8, 2, 2, 2), "cores filled in");
    assert_eq!(t("6,threads=2"), (6, 3, 1, 2));
    assert_eq!(
        t("sockets=2,cores=3,threads=2"),
        (12, 2, 3, 2),
        "the count from the levels"
    );
    assert_eq!(run_k(&["-smp", "4"]).machine.topology, None);
    assert_eq!(
        err_k(&["-smp", "4,sockets=2,cores=4"]),
        "-smp: sockets*cores*threads is 8, it must equal the vCPU count 4"
    );
    assert_eq!(
        err_k(&["-smp", "6,cores=4"]),
        "-smp: the vCPU count 6 is not a multiple of cores*threads = 4"
    );
    assert_eq!(
        err_k(&["-smp", "4,cores=0"]),
        "-smp: cores=0: every level needs at least one"
    );
    assert_eq!(
        err_k(&["-smp", "4,sockets=2,dies=2"]),
        "-smp: dies=2 is not supported (a microvm has sockets, cores and threads)"
    );
    // 254 vCPUs as 2 sockets of 127 cores: ids up to 254 collide with the IOAPIC's.
    assert_eq!(
        err_k(&["-smp", "254,sockets=2,cores=127"]),
        "-smp: sockets=2,cores=127,threads=1 needs APIC ids up to 254, the most is 253 (use power-of-two cores and threads, or fewer vCPUs)"
    );
    assert_eq!(t("248,sockets=4,cores=62"), (248, 4, 62, 1));
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
    assert_eq!(n("sockets=2,dies=1,clusters=1,cores=2"), 4);
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
        "-smp: the vCPU count 4 is not a multiple of sockets*threads = 3"
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
