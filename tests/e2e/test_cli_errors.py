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


# -- what a new user meets -----------------------------------------------------------------

def test_no_arguments_prints_the_error_and_how_to_start():
    r = run([])
    assert r.returncode == 1, r
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("stratovirt: ") and "kernel image is required" in lines[0]
    assert lines[1].startswith("Usage: stratovirt -kernel ") and "-help" in lines[1]


def test_help_marks_what_is_not_supported_and_documents_the_log_level():
    r = run(["-h"])
    assert r.returncode == 0
    text = r.stdout
    for opt in ("-netdev",):
        help_line = text.split(f"\n  {opt} ", 1)[1].split("\n")[1]
        assert help_line.endswith("(not supported yet)"), (opt, help_line)
    console = text.split("\n  -chardev ", 1)[1].split("\n")[1]
    assert "hvc0" in console and "not supported" not in console, console
    assert "STRATOVIRT_LOG_LEVEL" in text and "Ctrl-A x" in text
    assert "K/M/G/T" in text and "1.5G" in text
    assert "Not supported yet:" in text and "vCPU hot-plug" in text


@pytest.mark.parametrize("size,needles", [
    ("0x10000000", ["-m", "`0x10000000`", "hexadecimal"]),
    ("512X", ["-m", "K, M, G, T"]),
    ("1.0000001K", ["-m", "whole number of bytes"]),
])
def test_memory_sizes_say_what_is_wrong(size, needles):
    assert_one_line_error(run(["-kernel", KERNEL, "-m", size]), *needles)


def test_fractional_and_terabyte_sizes_are_accepted(tmp_path):
    # Accepted sizes get as far as the kernel (which is missing here), so -m passed parsing.
    missing = str(tmp_path / "nope.bin")
    for size in ("1.5G", "0.25T"):
        r = run(["-kernel", missing, "-m", size])
        assert_one_line_error(r, missing)
        assert "-m" not in r.stderr, r.stderr


def test_a_typo_gets_the_nearest_option():
    assert_one_line_error(run(["-kernal", KERNEL]), "-kernal: unknown option",
                          "did you mean -kernel?")
    assert_one_line_error(run(["--daemonise"]), "did you mean --daemonize?")
    r = run(["-kernel", KERNEL, "-nographic"])
    assert_one_line_error(r, "-nographic: unknown option")
    assert "did you mean" not in r.stderr


def test_single_dash_equals_works_like_double_dash(tmp_path):
    missing = str(tmp_path / "nope.bin")
    for spelling in (f"-kernel={missing}", f"--kernel={missing}"):
        r = run([spelling, "-m=256"])
        assert_one_line_error(r, f"cannot open kernel {missing}")


def test_a_failed_start_without_d_prints_exactly_one_line(tmp_path):
    """Without -D only warnings and errors are logged: no INFO lines before the error."""
    sock = tmp_path / "vm.sock"
    r = run(["-kernel", str(tmp_path / "nope.bin"), "-qmp", f"unix:{sock},server,nowait"])
    assert_one_line_error(r, str(tmp_path / "nope.bin"))
    assert os.listdir(tmp_path) == []


def test_the_same_image_twice_is_refused(tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * 4096)
    r = run(["-kernel", KERNEL, "-drive", f"id=a,file={img}", "-drive", f"id=b,file={tmp_path}/./disk.img"])
    assert_one_line_error(r, "-drive", str(tmp_path), "already used by drive `a`")


@pytest.mark.parametrize("case", ["tiny", "zeros", "larger-than-memory"])
def test_implausible_kernels_are_refused_at_once(tmp_path, case):
    k = tmp_path / "vmlinux.bin"
    if case == "tiny":
        k.write_bytes(b"abcdef")
        want = "smaller than one page"
    elif case == "zeros":
        with open(k, "wb") as f:
            f.truncate(64 << 20)  # 64 MiB of zeros: once ran for minutes, then "guest-panic"
        want = "first page is all zeros"
    else:
        with open(k, "wb") as f:
            f.write(b"\xf4")
            f.truncate(200 << 20)
        want = "is larger than guest memory (128 MiB)"
    r = run(["-kernel", str(k), "-m", "128"], timeout=10)
    assert_one_line_error(r, str(k), want)
