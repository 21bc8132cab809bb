use super::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

fn nothing_exists(_: &Path, _: Want) -> Occupant {
    Occupant::Nothing
}

fn good() -> VmConfig {
    VmConfig {
        name: "vm".into(),
        machine: MachineConfig {
            kind: MachineType::Microvm,
            vcpus: 1,
            topology: None,
            mem_size: DEFAULT_MEM_SIZE,
            omit_vm_memory: false,
        },
        boot: BootSource {
            kernel: "/k".into(),
            cmdline: String::new(),
            initrd: None,
        },
        drives: vec![],
        nets: vec![],
        console: None,
        vsock: None,
        balloon: None,
        serial: None,
        qmp: None,
        process: ProcessConfig {
            seccomp: true,
            ..Default::default()
        },
        incoming: None,
    }
}

fn check(cfg: &VmConfig) -> Result<(), String> {
    cfg.validate_with(&Origins::default(), nothing_exists)
        .map_err(|e| e.to_string())
}

fn drive(i: usize) -> DriveConfig {
    DriveConfig {
        id: format!("d{i}"),
        path: format!("/d{i}").into(),
        read_only: false,
        direct: true,
        serial: None,
    }
}

fn net(i: usize) -> NetConfig {
    NetConfig {
        id: format!("n{i}"),
        host_dev_name: format!("tap{i}"),
        mac: None,
        ..Default::default()
    }
}

/// A path in the temp directory, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!("svcfg-{}-{n}-{tag}", std::process::id())))
    }

    fn create(tag: &str) -> Self {
        let t = Self::new(tag);
        std::fs::write(&t.0, b"").unwrap();
        t
    }

    fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn good_config_passes_public_validate() {
    good().validate().unwrap();
}

#[test]
fn vcpu_bounds() {
    for (n, ok) in [(0u8, false), (1, true), (254, true), (255, false)] {
        let mut c = good();
        c.machine.vcpus = n;
        assert_eq!(check(&c).is_ok(), ok, "{n}");
    }
    let mut c = good();
    c.machine.vcpus = 255;
    assert_eq!(
        check(&c).unwrap_err(),
        "-smp: vCPU count 255 is out of range 1..=254"
    );
}

#[test]
fn memory_bounds() {
    for (m, ok) in [
        (MIN_MEM_SIZE, true),
        (MIN_MEM_SIZE - 4096, false),
        (MAX_MEM_SIZE, true),
        (MAX_MEM_SIZE + 4096, false),
        (MIN_MEM_SIZE + 1, false),
        (0, false),
    ] {
        let mut c = good();
        c.machine.mem_size = m;
        assert_eq!(check(&c).is_ok(), ok, "{m}");
    }
    let mut c = good();
    c.machine.mem_size = 0;
    assert_eq!(
        check(&c).unwrap_err(),
        "-m: memory size 0 bytes is out of range 128 MiB..=512 GiB"
    );
}

#[test]
fn name_bounds() {
    for (len, ok) in [(0, false), (1, true), (255, true), (256, false)] {
        let mut c = good();
        c.name = "n".repeat(len);
        assert_eq!(check(&c).is_ok(), ok, "{len}");
    }
}

#[test]
fn disk_and_nic_counts() {
    let mut c = good();
    c.drives = (0..MAX_DRIVES).map(drive).collect();
    assert!(check(&c).is_ok());
    c.drives.push(drive(MAX_DRIVES));
    assert_eq!(
        check(&c).unwrap_err(),
        "-drive: at most 6 disks are supported, got 7"
    );
    let mut c = good();
    c.nets = (0..MAX_NETS).map(net).collect();
    assert!(check(&c).is_ok());
    c.nets.push(net(MAX_NETS));
    assert_eq!(
        check(&c).unwrap_err(),
        "-netdev: at most 2 NICs are supported, got 3"
    );
}

#[test]
fn drive_rules() {
    let mut c = good();
    c.drives = vec![drive(0)];
    c.drives[0].serial = Some("s".repeat(20));
    assert!(check(&c).is_ok());
    c.drives[0].serial = Some("s".repeat(21));
    assert!(check(&c).unwrap_err().contains("is longer than 20 bytes"));
    c.drives[0].serial = None;
    c.drives[0].id.clear();
    assert_eq!(check(&c).unwrap_err(), "-drive: drive id is empty");
}

#[test]
fn nic_rules() {
    let mut c = good();
    c.nets = vec![net(0)];
    c.nets[0].host_dev_name = "t".repeat(15);
    assert!(check(&c).is_ok());
    c.nets[0].host_dev_name = "t".repeat(16);
    assert_eq!(
        check(&c).unwrap_err(),
        "-netdev: tap device name `tttttttttttttttt` is longer than 15 bytes"
    );
    c.nets[0].host_dev_name = String::new();
    assert_eq!(check(&c).unwrap_err(), "-netdev: tap device name is empty");
    c.nets[0].host_dev_name = "tap0".into();
    c.nets[0].mac = Some([0x01, 0, 0x5e, 0, 0, 1]);
    assert_eq!(
        check(&c).unwrap_err(),
        "-netdev: MAC address 01:00:5e:00:00:01 is multicast"
    );
    c.nets[0].mac = Some([0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88]);
    assert!(check(&c).is_ok());
    c.nets[0].mac = Some([0; 6]);
    assert_eq!(
        check(&c).unwrap_err(),
        "-netdev: MAC address 00:00:00:00:00:00 is all zeros"
    );
    c.nets[0].mac = None;
    c.nets[0].host_dev_name = "a/b".into();
    assert_eq!(
        check(&c).unwrap_err(),
        "-netdev: tap device name `a/b` is not an interface name"
    );
}

#[test]
fn a_tap_serves_one_nic_and_ids_are_unique_across_devices() {
    let mut c = good();
    c.nets = vec![net(0), net(1)];
    c.nets[1].host_dev_name = "tap0".into();
    assert_eq!(
        check(&c).unwrap_err(),
        "-netdev: tap device `tap0` is already the TAP of NIC `n0` (a TAP serves one NIC)"
    );
    c.nets[0].host_dev_name.clear();
    c.nets[0].fd = Some(5);
    c.nets[1].host_dev_name.clear();
    c.nets[1].fd = Some(5);
    assert_eq!(
        check(&c).unwrap_err(),
        "-netdev: fd=5 is already the TAP of NIC `n0` (a TAP serves one NIC)"
    );
    c.nets[1].fd = Some(2);
    assert_eq!(
        check(&c).unwrap_err(),
        "-netdev: fd=2 is a standard stream, not a TAP descriptor"
    );
    c.nets[1].fd = Some(6);
    assert!(check(&c).is_ok());
    c.nets[1].vhost_fd = Some(9);
    assert_eq!(check(&c).unwrap_err(), "-netdev: vhostfd= needs vhost=on");
    c.nets[1].vhost = true;
    assert!(check(&c).is_ok());
    c.nets[1].vhost_fd = Some(5);
    assert_eq!(
        check(&c).unwrap_err(),
        "-netdev: vhostfd=5 is not a descriptor of its own"
    );
    c.nets[1].vhost_fd = None;
    c.drives = vec![drive(0)];
    c.nets[1].device_id = Some(c.drives[0].id.clone());
    assert!(check(&c)
        .unwrap_err()
        .ends_with("is already used by another device (ids are unique in a VM)"));
    c.nets[1].device_id = Some("n0".into());
    assert!(check(&c).unwrap_err().contains("device id `n0`"));
}

#[test]
fn guest_cid_bounds() {
    for (cid, ok) in [
        (2, false),
        (3, true),
        (u64::from(u32::MAX) - 1, true),
        (u64::from(u32::MAX), false),
    ] {
        let mut c = good();
        c.vsock = Some(VsockConfig {
            id: "v".into(),
            guest_cid: cid,
            uds_path: None,
            vhost_fd: None,
        });
        assert_eq!(check(&c).is_ok(), ok, "{cid}");
    }
}

#[test]
fn two_other_devices_are_allowed() {
    let mut c = good();
    c.console = Some(ConsoleConfig {
        id: "c".into(),
        socket_path: "/c.sock".into(),
    });
    c.vsock = Some(VsockConfig {
        id: "v".into(),
        guest_cid: 3,
        uds_path: None,
        vhost_fd: None,
    });
    assert!(check(&c).is_ok());
    const { assert!(MAX_OTHER_DEVICES >= 2) };
}

#[test]
fn qmp_and_console_sockets_differ() {
    let mut c = good();
    c.console = Some(ConsoleConfig {
        id: "c".into(),
        socket_path: "/s.sock".into(),
    });
    c.qmp = Some(QmpSocketConfig {
        path: "/s.sock".into(),
    });
    assert_eq!(
        check(&c).unwrap_err(),
        "-qmp: socket path `/s.sock` is also the console socket"
    );
}

#[test]
fn relative_incoming_is_refused() {
    let mut c = good();
    c.incoming = Some("snap".into());
    assert!(check(&c)
        .unwrap_err()
        .starts_with("-incoming: snapshot path `snap` must be absolute"));
}

fn parse_real(a: &[&str]) -> Result<crate::Action, String> {
    let a: Vec<String> = a.iter().map(|s| s.to_string()).collect();
    crate::parse_args(&a).map_err(|e| e.to_string())
}

#[test]
fn a_file_at_a_socket_path_is_refused_without_removal_advice() {
    let t = TempPath::create("qmp.sock");
    for (opt, val) in [
        ("-qmp", format!("unix:{},server,nowait", t.s())),
        ("-api-channel", format!("unix:{}", t.s())),
    ] {
        let e = parse_real(&["-kernel", "/k", opt, &val]).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{opt}: socket path `{}` already exists and is not a socket (choose another path)",
                t.s()
            )
        );
    }
    // Gone: accepted.
    let path = t.s().to_string();
    drop(t);
    assert!(parse_real(&["-kernel", "/k", "-qmp", &format!("unix:{path}")]).is_ok());
}

#[test]
fn a_live_socket_names_its_owner_and_a_stale_one_gets_the_advice() {
    let t = TempPath::new("live.sock");
    let listener = std::os::unix::net::UnixListener::bind(&t.0).unwrap();
    let live = format!(
        "socket path `{}` is in use by running process {}",
        t.s(),
        std::process::id()
    );
    let e = parse_real(&[
        "-kernel",
        "/k",
        "-qmp",
        &format!("unix:{},server,nowait", t.s()),
    ])
    .unwrap_err();
    assert_eq!(e, format!("-qmp: {live}"));
    let e = parse_real(&[
        "-kernel",
        "/k",
        "-chardev",
        &format!("socket,id=c,path={},server,nowait", t.s()),
    ])
    .unwrap_err();
    assert_eq!(e, format!("-chardev: {live}"));
    drop(listener);
    let e = parse_real(&["-kernel", "/k", "-api-channel", &format!("unix:{}", t.s())]).unwrap_err();
    assert_eq!(
        e,
        format!(
            "-api-channel: socket path `{}` already exists, left over from a process that is gone (nothing listens on it): remove it first",
            t.s()
        )
    );
}

#[test]
fn dangling_symlink_counts_as_existing() {
    let target = TempPath::new("target");
    let link = TempPath::new("link");
    std::os::unix::fs::symlink(&target.0, &link.0).unwrap();
    assert_ne!(probe_path(&link.0, Want::Socket), Occupant::Nothing);
    assert_eq!(probe_path(&target.0, Want::Socket), Occupant::Nothing);
}

#[test]
fn existing_pidfile_is_refused_naming_its_process() {
    let t = TempPath::new("vm.pid");
    std::fs::write(&t.0, format!("{}\n", std::process::id())).unwrap();
    let e = parse_real(&["-kernel", "/k", "-pidfile", t.s(), "-daemonize"]).unwrap_err();
    assert_eq!(
        e,
        format!(
            "-pidfile: pidfile `{}` is in use by running process {}",
            t.s(),
            std::process::id()
        )
    );
    std::fs::write(&t.0, "").unwrap();
    let e = parse_real(&["-kernel", "/k", "-pidfile", t.s(), "-daemonize"]).unwrap_err();
    assert_eq!(
        e,
        format!(
            "-pidfile: pidfile `{}` already exists, left over from a process that is gone (it holds no process id): remove it first",
            t.s()
        )
    );
}

#[test]
fn config_file_is_read_from_disk() {
    let t = TempPath::new("vm.json");
    // The seed's console socket is in a directory that does not exist here: put it in one
    // that does.
    let sock = TempPath::new("console.socket");
    let text = crate::json::tests::SEED_004_JSON.replace("/path/to/console.socket", sock.s());
    std::fs::write(&t.0, &text).unwrap();
    let mut want = crate::json::tests::seed_004_vm();
    want.console.as_mut().unwrap().socket_path = sock.0.clone();
    match parse_real(&["-config", t.s()]).unwrap() {
        crate::Action::Run(cfg) => assert_eq!(*cfg, want),
        other => panic!("{other:?}"),
    }
    assert_eq!(crate::parse_json_config(&text).unwrap(), want);
    // As written in the seed, the missing directory is named.
    assert_eq!(
        crate::parse_json_config(crate::json::tests::SEED_004_JSON)
            .unwrap_err()
            .to_string(),
        "console.socket_path: socket path `/path/to/console.socket` cannot be created: directory `/path/to` does not exist"
    );
}

#[test]
fn a_socket_or_pidfile_in_a_missing_directory_is_refused_naming_it() {
    let dir = TempPath::new("no-such-dir");
    let p = format!("{}/vm.sock", dir.s());
    let why = |what: &str| {
        format!(
            "{what} `{p}` cannot be created: directory `{}` does not exist",
            dir.s()
        )
    };
    for (opt, val) in [
        ("-qmp", format!("unix:{p},server,nowait")),
        ("-chardev", format!("socket,id=c,path={p},server,nowait")),
        ("-chardev", format!("id=c,path={p}")),
    ] {
        let e = parse_real(&["-kernel", "/k", opt, &val]).unwrap_err();
        assert_eq!(e, format!("{opt}: {}", why("socket path")));
    }
    let e = parse_real(&["-kernel", "/k", "-pidfile", &p, "-daemonize"]).unwrap_err();
    assert_eq!(e, format!("-pidfile: {}", why("pidfile")));
    let long = format!("/tmp/{}.sock", "x".repeat(110));
    let e = parse_real(&["-kernel", "/k", "-chardev", &format!("id=c,path={long}")]).unwrap_err();
    assert_eq!(
        e,
        "-chardev: socket path is 120 bytes long, the limit is 107"
    );
}

#[test]
fn one_image_backs_one_drive_whatever_its_name() {
    let dir = std::env::temp_dir().join(format!("sv-validate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("disk.img");
    std::fs::write(&img, b"").unwrap();
    let other = dir.join(".").join("disk.img");
    let mut cfg = good();
    cfg.drives.clear();
    for (id, path) in [("a", img.clone()), ("b", other)] {
        cfg.drives.push(DriveConfig {
            id: id.into(),
            path,
            read_only: true,
            direct: false,
            serial: None,
        });
    }
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("is already used by drive `a`"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
