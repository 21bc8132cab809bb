"""Network namespaces, TAPs and raw frames for the NIC tests: every TAP lives in a namespace
the test creates and removes, the VMM runs inside it (`ip netns exec`), and the "host side"
of each TAP is an AF_PACKET socket opened in the namespace. No address is configured and no
frame leaves the namespace.

    with NetNs() as ns:
        ns.add_tap("svtap0")
        vm = Vm(ns.exec_argv([BIN, ...]))        # the VMM sees the namespace's TAPs
        peer = ns.packet_socket("svtap0")         # frames the guest sends, and to send it
"""

from __future__ import annotations

import ctypes
import fcntl
import itertools
import os
import socket
import struct
import subprocess
import threading
import time

ETHERTYPE = 0x88B5
BROADCAST = b"\xff" * 6
# A locally administered unicast source address for the host side.
HOST_MAC = bytes.fromhex("02000000aa01")

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_TUN = 0x0001

_count = itertools.count()


def run(*cmd: str) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def pattern_frame(seed: int, seq: int, length: int, src: bytes = HOST_MAC,
               dst: bytes = BROADCAST) -> bytes:
    """The test kernel's frame `seq` of `seed` (guest/src/netframe.rs): EtherType 0x88b5, the
    sequence number, then data byte j = (seed + seq + j) mod 256."""
    data = bytes((seed + seq + j) & 0xFF for j in range(length - 18))
    return dst + src + struct.pack("!H", ETHERTYPE) + struct.pack("<I", seq) + data


class NetNs:
    """A network namespace of the test's own, removed (with its TAPs) at the end."""

    def __init__(self):
        self.name = f"svnet-{os.getpid()}-{next(_count)}"
        run("ip", "netns", "add", self.name)
        self.ip("link", "set", "lo", "up")
        # No IPv6 chatter (router solicitations, DAD) on the TAPs.
        self.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        self.exec("sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")

    def exec(self, *cmd: str) -> str:
        return run("ip", "netns", "exec", self.name, *cmd)

    def ip(self, *args: str) -> str:
        return self.exec("ip", *args)

    def exec_argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace (same pid: `ip netns exec` execs it)."""
        return ["ip", "netns", "exec", self.name] + list(argv)

    def add_tap(self, name: str, up: bool = True, user: str | None = None) -> str:
        args = ["tuntap", "add", name, "mode", "tap"]
        if user:
            args += ["user", user]
        self.ip(*args)
        if up:
            self.ip("link", "set", name, "up")
        return name

    def add_tun(self, name: str) -> str:
        self.ip("tuntap", "add", name, "mode", "tun")
        return name

    def in_ns(self, fn):
        """Runs `fn` on a thread that has joined the namespace (setns is per thread); sockets
        and descriptors it opens stay in the namespace."""
        out = {}

        def body():
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    out["error"] = OSError(ctypes.get_errno(), "setns")
                    return
            finally:
                os.close(fd)
            try:
                out["value"] = fn()
            except Exception as e:  # carried to the caller's thread
                out["error"] = e

        t = threading.Thread(target=body)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out["value"]

    def packet_socket(self, iface: str, ethertype: int = ETHERTYPE) -> "Peer":
        """The host side of TAP `iface`: receives frames of `ethertype` the guest sends and
        sends frames to the guest."""
        def make():
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
            s.bind((iface, 0))
            return s
        return Peer(self.in_ns(make))

    def open_tap_fd(self, name: str, flags: int = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) -> int:
        """A TAP queue descriptor of `name` opened as Kata opens it (IFF_TAP|IFF_NO_PI|
        IFF_VNET_HDR), inheritable."""
        def make():
            fd = os.open("/dev/net/tun", os.O_RDWR)
            ifr = struct.pack("16sH22x", name.encode(), flags)
            fcntl.ioctl(fd, TUNSETIFF, ifr)
            os.set_inheritable(fd, True)
            return fd
        return self.in_ns(make)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def __enter__(self) -> "NetNs":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Peer:
    """An AF_PACKET socket on a TAP's host side."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def send_test_frames(self, seed: int, count: int, length: int, dst: bytes = BROADCAST,
                         gap: float = 0.0) -> None:
        for seq in range(count):
            self.send(pattern_frame(seed, seq, length, dst=dst))
            if gap:
                time.sleep(gap)

    def recv_all(self, count: int, timeout: float) -> list[bytes]:
        """Up to `count` frames, waiting at most `timeout` seconds in all."""
        out = []
        end = time.monotonic() + timeout
        while len(out) < count:
            left = end - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(left)
            try:
                out.append(self.sock.recv(70000))
            except socket.timeout:
                break
        return out

    def drain(self) -> int:
        """Drops whatever is queued; returns how many frames."""
        n = 0
        self.sock.settimeout(0)
        try:
            while True:
                self.sock.recv(70000)
                n += 1
        except (BlockingIOError, socket.timeout):
            pass
        return n

    def close(self) -> None:
        self.sock.close()


class Sender:
    """Sends a test frame every `gap` seconds from a thread until stopped (for the receive
    cases of the malformed chains, which wait for a frame)."""

    def __init__(self, peer: Peer, seed: int, length: int = 100, gap: float = 0.02):
        self.peer, self.seed, self.length, self.gap = peer, seed, length, gap
        self.stop_evt = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_evt.is_set():
            try:
                self.peer.send(pattern_frame(self.seed, self.sent, self.length))
            except OSError:
                pass
            self.sent += 1
            self.stop_evt.wait(self.gap)

    def stop(self):
        self.stop_evt.set()
        self.thread.join(5)
