//! Disks, NICs, console, vsock, sockets, -serial and -incoming.

use super::*;

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
fn kata_s_console_triple() {
    let cfg = run_k(&[
        "-device",
        "virtio-serial-device,id=virtio-serial0",
        "-chardev",
        "socket,id=charconsole0,path=/run/kata/console.sock,server,nowait",
        "-device",
        "virtconsole,chardev=charconsole0,id=virtio-console0,nr=0",
    ]);
    assert_eq!(
        cfg.console,
        Some(ConsoleConfig {
            id: "charconsole0".into(),
            socket_path: "/run/kata/console.sock".into(),
        })
    );
    assert_eq!(
        err_k(&[
            "-chardev",
            "socket,id=c,path=/c.sock,server,nowait",
            "-device",
            "virtconsole,chardev=c,nr=1",
        ]),
        "-device: nr=1 is not supported (the console is port 0, the only port)"
    );
    assert_eq!(
        err_k(&[
            "-chardev",
            "socket,id=c,path=/c.sock",
            "-device",
            "virtconsole,chardev=c",
            "-device",
            "virtconsole,chardev=c",
        ]),
        "-device: only one virtconsole is supported"
    );
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
                guest_cid: 3,
                uds_path: None,
                vhost_fd: None,
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
fn vsock_backends() {
    // Kata's form: an inherited /dev/vhost-vsock.
    let cfg = run_k(&[
        "-device",
        "vhost-vsock-device,id=vsock-id,guest-cid=5,vhostfd=7",
    ]);
    assert_eq!(cfg.vsock.as_ref().unwrap().vhost_fd, Some(7));
    assert_eq!(cfg.vsock.unwrap().uds_path, None);
    for dev in [
        "vhost-vsock-device,id=v,guest-cid=3,uds-path=/run/v.sock",
        "vsock,id=v,guest-cid=3,uds-path=/run/v.sock",
    ] {
        let v = run_k(&["-device", dev]).vsock.unwrap();
        assert_eq!(
            v.uds_path.as_deref(),
            Some(std::path::Path::new("/run/v.sock"))
        );
        assert_eq!(v.vhost_fd, None);
    }
    assert_eq!(
        err_k(&[
            "-device",
            "vsock,id=v,guest-cid=3,uds-path=/v.sock,vhostfd=7"
        ]),
        "-device: vhostfd= is for vhost-vsock; uds-path= selects the userspace backend: give one"
    );
    assert_eq!(
        err_k(&["-device", "vsock,id=v,guest-cid=3,vhostfd=2"]),
        "-device: vhostfd=2 is not a descriptor of its own"
    );
    assert_eq!(
        err_k(&["-device", "vsock,id=v,guest-cid=3,vhostfd=x"]),
        "-device: vhostfd=x is not a descriptor number"
    );
    assert_eq!(
        err_k(&["-device", "vsock,id=v,guest-cid=3,uds-path="]),
        "-device: socket path is empty"
    );
    let long = format!("vsock,id=v,guest-cid=3,uds-path=/{}", "a".repeat(96));
    assert_eq!(
        err_k(&["-device", &long]),
        "-device: vsock socket path is 97 bytes long, the limit is 96 (guest connections to port P go to <path>_P)"
    );
    assert_eq!(
        err_k(&[
            "-device",
            "vsock,id=v,guest-cid=3,uds-path=/s.sock",
            "-qmp",
            "unix:/s.sock,server,nowait"
        ]),
        "-qmp: socket path `/s.sock` is also the vsock socket"
    );
    assert_eq!(
        err_k(&[
            "-device",
            "vsock,id=v,guest-cid=3,uds-path=/s.sock",
            "-chardev",
            "id=c,path=/s.sock"
        ]),
        "-device: socket path `/s.sock` is also the console socket"
    );
    assert!(err_k(&["-device", "vsock,id=v,guest-cid=3,bogus=1"]).starts_with("-device: "));
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
    assert_eq!(
        err_k(&["-drive", "id=a,file=/img", "-drive", "id=b,file=/img"]),
        "-drive: image `/img` is already used by drive `a` (a disk image can back one drive only)"
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

#[test]
fn balloon_spellings() {
    let cfg = run_k(&["-device", "virtio-balloon-device"]);
    assert_eq!(cfg.balloon, Some(BalloonConfig::default()));
    let cfg = run_k(&[
        "-device",
        "virtio-balloon-device,id=balloon0,deflate-on-oom=on,free-page-reporting=on",
    ]);
    assert_eq!(
        cfg.balloon,
        Some(BalloonConfig {
            id: Some("balloon0".into()),
            deflate_on_oom: true,
            free_page_reporting: true,
        })
    );
    let cfg = run_k(&[
        "-device",
        "virtio-balloon-mmio,deflate-on-oom=off,free-page-reporting=true",
    ]);
    let b = cfg.balloon.unwrap();
    assert!(!b.deflate_on_oom && b.free_page_reporting);
    assert_eq!(run_k(&[]).balloon, None);
}

#[test]
fn balloon_errors() {
    assert_eq!(
        err_k(&[
            "-device",
            "virtio-balloon-device",
            "-device",
            "virtio-balloon-device,deflate-on-oom=on"
        ]),
        "-device: only one balloon device is supported"
    );
    assert!(
        err_k(&["-device", "virtio-balloon-device,deflate-on-oom=maybe"]).contains("not a boolean"),
    );
    assert!(err_k(&["-device", "virtio-balloon-device,guest-stats=on"])
        .starts_with("-device: unknown key `guest-stats`"));
    assert_eq!(
        err_k(&[
            "-drive",
            "id=b0,file=/r",
            "-device",
            "virtio-balloon-device,id=b0"
        ]),
        "-device: id `b0` is also a drive's id"
    );
    // A third device besides disks and NICs.
    assert_eq!(
        err_k(&[
            "-chardev",
            "id=con0,path=/tmp/c.sock",
            "-device",
            "vsock,id=v,guest-cid=3",
            "-device",
            "virtio-balloon-device"
        ]),
        "-device: at most 2 devices besides disks and NICs are supported, got 3 (console, vsock and balloon count)"
    );
    // Snapshots never hold a balloon.
    assert_eq!(
        err_k(&[
            "-device",
            "virtio-balloon-device",
            "-incoming",
            "file:/tmp/snap"
        ]),
        "-incoming: a VM with a balloon device cannot start from a snapshot (snapshots exclude the balloon)"
    );
}
