"""Writes the seed inputs of the fuzz targets (run from fuzz/: python3 seeds/make_seeds.py)."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
EXISTING = "/bin/sh"  # a path that exists everywhere, for options that check existence


def put(target, name, data):
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def args(*a):
    return "\0".join(a)


put("cmdline", "seed1", args("-name", "vm1", "-kernel", EXISTING, "-append", "console=ttyS0 reboot=k panic=1",
                             "-smp", "2", "-m", "512", "-qmp", "unix:/tmp/fz-vm.sock,server,nowait", "-serial", "stdio"))
put("cmdline", "seed2", args("-name", "VM", "-kernel", EXISTING, "-append", "console=ttyS0 root=/dev/vda",
                             "-initrd", EXISTING, "-smp", "cpus=2", "-m", "512M",
                             "-drive", f"id=rootfs,file={EXISTING},readonly=off,direct=on,serial=abc",
                             "-device", "virtio-blk-device,drive=rootfs",
                             "-netdev", "tap,id=net0,ifname=tap0",
                             "-device", "virtio-net-device,netdev=net0,mac=0e:90:df:9f:a8:88",
                             "-chardev", "socket,id=con0,path=/tmp/fz-console.sock,server,nowait",
                             "-device", "virtconsole,chardev=con0",
                             "-device", "vhost-vsock-device,id=vsock0,guest-cid=3",
                             "-api-channel", "unix:/tmp/fz-vm2.sock", "-D", "/tmp/fz.log",
                             "-pidfile", "/tmp/fz.pid", "-daemonize", "-disable-seccomp", "-omit_vm_memory",
                             "-machine", "microvm,dump-guest-core=off", "-incoming", "file:/tmp/fz-snap"))
put("cmdline", "seed3", args("-kernel", EXISTING, "-drive", f"id=rootfs,file={EXISTING}",
                             "-netdev", "id=iface_id,netdev=tap0,mac=0e:90:df:9f:a8:88",
                             "-chardev", "id=console_id,path=/tmp/fz-c.sock",
                             "-device", "vsock,id=vsock_id,guest-cid=3", "-m", "2G", "-D"))
put("cmdline", "seed4", args("-h"))

cfg = {
    "boot-source": {"kernel_image_path": EXISTING, "boot_args": "console=ttyS0 reboot=k panic=1",
                    "initrd_fs_path": EXISTING},
    "machine-config": {"name": "abc", "vcpu_count": 2, "mem_size": 268435456, "omit_vm_memory": False},
    "drive": [{"drive_id": "rootfs", "path_on_host": EXISTING, "direct": True, "read_only": False,
               "serial_num": "abcd"}],
    "net": [{"iface_id": "net0", "host_dev_name": "tap0", "mac": "0e:90:df:9f:a8:88"}],
    "console": {"console_id": "charconsole0", "socket_path": "/tmp/fz-console.socket"},
    "serial": {"stdio": True},
    "vsock": {"vsock_id": "vsock-123321132", "guest_cid": 4},
}
put("json_config", "seed1", json.dumps(cfg, indent=2))
small = {"boot-source": cfg["boot-source"], "machine-config": {"name": "x", "vcpu_count": 1, "mem_size": 134217728}}
put("json_config", "seed2", json.dumps(small))

cmds = [
    {"execute": "qmp_capabilities"},
    {"execute": "query-status", "id": 1},
    {"execute": "query-cpus"},
    {"execute": "query-hotpluggable-cpus"},
    {"execute": "query-version"},
    {"execute": "query-commands"},
    {"execute": "stop"}, {"execute": "cont"},
    {"execute": "blockdev-add", "arguments": {"node-name": "drive-0", "file": {"driver": "file", "filename": "/tmp/x.img"},
                                               "cache": {"direct": True}, "read-only": False}},
    {"execute": "device_add", "arguments": {"id": "drive-0", "driver": "virtio-blk-mmio", "addr": "0x1"}},
    {"execute": "device_add", "arguments": {"id": "drive-1", "driver": "virtio-blk-mmio", "lun": 2}},
    {"execute": "device_del", "arguments": {"id": "drive-0"}},
    {"execute": "blockdev-del", "arguments": {"node-name": "drive-0"}},
    {"execute": "netdev_add", "arguments": {"id": "net-0", "ifname": "tap0"}},
    {"execute": "quit", "id": "q"},
]
put("qmp", "seed1", b"\x40" + "\n".join(json.dumps(c) for c in cmds).encode() + b"\n")
put("qmp", "seed2", b"\x03" + "".join(json.dumps(c) for c in cmds[:4]).encode())

NEXT, WRITE, INDIRECT = 1, 2, 4


def desc(addr, length, flags, nxt):
    return struct.pack("<QIHH", addr, length, flags, nxt)


def blk(head, descs, blob):
    table = b"".join(descs).ljust(16 * 16, b"\0")
    return bytes([head]) + table + blob


header_in = struct.pack("<IIQ", 0, 0, 5)
put("blk_request", "read", blk(0, [desc(0x1_0000, 16, NEXT, 1), desc(0x20_0000, 1024, WRITE | NEXT, 2),
                                   desc(0x4000, 1, WRITE, 0)], header_in))
header_out = struct.pack("<IIQ", 1, 0, 9)
put("blk_request", "write", blk(1, [b"\0" * 16, desc(0x1_0000, 16 + 512, NEXT, 2), desc(0x5000, 1, WRITE, 0)],
                                header_out))
indirect = desc(0x1_0000, 16, NEXT, 1) + desc(0x6000, 512, WRITE | NEXT, 2) + desc(0x7000, 1, WRITE, 0)
put("blk_request", "indirect", blk(0, [desc(0x1_0100, 48, INDIRECT, 0)], header_in.ljust(0x100, b"\0") + indirect))
put("blk_request", "discard", blk(0, [desc(0x1_0000, 32, NEXT, 1), desc(0x8000, 1, WRITE, 0)],
                                  struct.pack("<IIQQII", 11, 0, 0, 0, 8, 0)))
put("blk_request", "get_id", blk(0, [desc(0x1_0000, 16, NEXT, 1), desc(0x9000, 21, WRITE, 0)],
                                 struct.pack("<IIQ", 8, 0, 0)))
