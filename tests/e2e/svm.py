"""Starting stratovirt with the test kernel, and a minimal raw QMP client (what `ncat -U` does)."""
import json
import os
import re
import socket
import time

from harness import Vm

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/stratovirt")
KERNEL_BIN = os.path.join(ROOT, "target/guest/testkernel.bin")
KERNEL_ELF = os.path.join(ROOT, "target/guest/testkernel.elf")
READY = re.compile(r"READY cpus=(\d+) mem=(\d+) virtio=(\d+)")
# Generous: guest code runs through KVM's instruction emulator on these hosts.
BOOT_TIMEOUT = 60


def require_kvm():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise RuntimeError("/dev/kvm is missing or not accessible: these tests need KVM")


def stratovirt_cmd(cpus=1, mem="128", kernel=KERNEL_BIN, qmp=None, extra=()):
    cmd = [BIN, "-kernel", kernel, "-append", "console=ttyS0 reboot=k panic=1",
           "-smp", str(cpus), "-m", str(mem), "-serial", "stdio"]
    if qmp:
        cmd += ["-qmp", f"unix:{qmp},server,nowait"]
    return cmd + list(extra)


def boot(cmd, timeout=BOOT_TIMEOUT):
    """Starts `cmd` and waits for READY; returns (vm, match)."""
    require_kvm()
    vm = Vm(cmd)
    try:
        m = vm.wait_for(READY, timeout)
    except Exception:
        vm.kill()
        raise
    return vm, m


def wait_path(path, timeout=10):
    end = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > end:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)


class RawQmp:
    """One JSON object per line, as a person with ncat would type it."""

    def __init__(self, path, timeout=10):
        wait_path(path)
        # The VMM links the socket into place once it listens: a refusal is a failure.
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb", buffering=0)
        self.greeting = self.file.readline()

    def send(self, obj):
        data = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data + b"\n")

    def recv(self):
        line = self.file.readline()
        if not line:
            raise EOFError("QMP connection closed")
        return json.loads(line)

    def execute(self, name, arguments=None, **extra):
        """Sends a command; returns (events seen before the reply, reply)."""
        msg = {"execute": name}
        if arguments is not None:
            msg["arguments"] = arguments
        msg.update(extra)
        self.send(msg)
        events = []
        while True:
            r = self.recv()
            if "event" in r:
                events.append(r)
            else:
                return events, r

    def close(self):
        # The makefile() object holds the descriptor open too: close both.
        self.file.close()
        self.sock.close()
