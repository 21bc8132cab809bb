"""The command line and JSON errors a user sees: one line on stderr, exit status 1, nothing
left on disk. Also -h/-V. These need no guest to boot."""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/stratovirt")
KERNEL = os.path.join(ROOT, "target/guest/testkernel.bin")


def run(args, timeout=20):
    return subprocess.run([BIN] + args, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(r, *needles):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def assert_startup_error(r, *needles):
    """A failure after parsing (the log may have started on stderr): exit 1 and a final
    `stratovirt: ...` line naming the problem."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("stratovirt: "), r.stderr
    for n in needles:
        assert n in last, (n, last)


def test_help_and_version():
    for flag in ("-h", "-help", "--help"):
        r = run([flag])
        assert r.returncode == 0 and "-kernel" in r.stdout and "-api-channel" in r.stdout
    for flag in ("-V", "-version", "--version"):
        r = run([flag])
        assert r.returncode == 0 and "StratoVirt" in r.stdout


@pytest.mark.parametrize("args,needles", [
    (["-smp", "300"], ["-smp", "254"]),
    (["-smp", "0"], ["-smp"]),
    (["-m", "127"], ["-m"]),
    (["-m", "100000000"], ["-m"]),
    (["-m", "513G"], ["-m"]),
    (["-name", "x" * 256], ["-name"]),
    (["-bogus"], ["-bogus"]),
    (["-serial", "pty"], ["-serial"]),
    (["-qmp", "tcp:127.0.0.1:4444"], ["-qmp"]),
])
def test_bad_options(args, needles, tmp_path):
    r = run(["-kernel", KERNEL] + args)
    assert_one_line_error(r, *needles)
    assert os.listdir(tmp_path) == []


def test_kernel_required():
    assert_one_line_error(run(["-m", "128"]), "kernel")


def test_missing_kernel_names_the_file(tmp_path):
    sock = tmp_path / "vm.sock"
    r = run(["-kernel", str(tmp_path / "nope.bin"), "-qmp", f"unix:{sock},server,nowait"])
    assert_startup_error(r, str(tmp_path / "nope.bin"))
    assert os.listdir(tmp_path) == [], "the QMP socket must be removed on a failed start"


def test_corrupt_elf_kernel(tmp_path):
    k = tmp_path / "vmlinux"
    k.write_bytes(b"\x7fELF" + b"\xff" * 300)
    assert_startup_error(run(["-kernel", str(k)]), "not a valid ELF image", str(k))


def test_empty_kernel(tmp_path):
    k = tmp_path / "vmlinux.bin"
    k.write_bytes(b"")
    assert_startup_error(run(["-kernel", str(k)]), "empty")


def test_existing_socket_is_refused_and_kept(tmp_path):
    sock = tmp_path / "vm.sock"
    sock.write_text("")
    for opt in (["-qmp", f"unix:{sock},server,nowait"], ["-api-channel", f"unix:{sock}"]):
        r = run(["-kernel", KERNEL] + opt)
        assert_one_line_error(r, str(sock), "exists")
        assert sock.exists()
    assert sorted(os.listdir(tmp_path)) == ["vm.sock"]


def test_json_unknown_key(tmp_path):
    cfg = {"boot-source": {"kernel_image_path": KERNEL, "boot_args": "console=ttyS0"},
           "machine-config": {"name": "a", "vcpu_count": 1, "mem_size": 134217728,
                              "bogus_key": 1}}
    f = tmp_path / "vm.json"
    f.write_text(json.dumps(cfg))
    assert_one_line_error(run(["-config", str(f)]), "bogus_key")


def test_json_limits(tmp_path):
    cfg = {"boot-source": {"kernel_image_path": KERNEL, "boot_args": "console=ttyS0"},
           "machine-config": {"name": "a", "vcpu_count": 255, "mem_size": 134217728}}
    f = tmp_path / "vm.json"
    f.write_text(json.dumps(cfg))
    assert_one_line_error(run(["-config", str(f)]), "vcpu_count")


def test_pidfile_needs_daemonize(tmp_path):
    r = run(["-kernel", KERNEL, "-pidfile", str(tmp_path / "vm.pid")])
    assert_one_line_error(r, "-pidfile", "-daemonize")
    assert os.listdir(tmp_path) == []
