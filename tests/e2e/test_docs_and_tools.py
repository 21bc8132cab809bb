"""Docs that are true and the tools around the VMM: no reference outside the repository (the
`make lint` check, and that it catches one), benchmarks.md quotes only its table, `make demo`
removes its directory and shows the console keys, `make install` installs the binary."""
import os
import re
import subprocess

import pytest

from svm import BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHECK = os.path.join(ROOT, "tools", "check-paths.py")


def check_paths(root):
    return subprocess.run(["python3", CHECK, str(root)], capture_output=True, text=True, timeout=60)


def test_the_repository_names_no_path_outside_it():
    r = check_paths(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_check_catches_references_outside(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text(  # check-paths: ignore
        "See `/work/shared/ENVIRONMENT.md`, [the spec](../../SPEC.md), [b](b.md) and "  # check-paths: ignore
        "`../shared/nested/run.sh`; [ok](a.md), [web](https://example.org/x.md).\n")  # check-paths: ignore
    (tmp_path / "tool.py").write_text('# see NOTES.md\npath = "/tmp/vm.sock"  # an example\n')  # check-paths: ignore
    r = check_paths(tmp_path)
    assert r.returncode == 1
    found = r.stdout.splitlines()
    for want in ["docs/a.md:1: names a path outside the repository: /work/shared/ENVIRONMENT.md",  # check-paths: ignore
                 "docs/a.md:1: relative path leaves the repository: ../../SPEC.md",  # check-paths: ignore
                 "docs/a.md:1: link to a file not in the repository: b.md",  # check-paths: ignore
                 "docs/a.md:1: relative path names nothing in the repository: ../shared/nested/run.sh",  # check-paths: ignore
                 "tool.py:1: names a document that is not in the repository: NOTES.md"]:  # check-paths: ignore
        assert want in found, (want, found)
    assert not any("a.md)" in f or "example.org" in f or "/tmp/vm.sock" in f for f in found), found  # check-paths: ignore


def test_benchmarks_prose_quotes_only_figures_of_its_table():
    text = open(os.path.join(ROOT, "docs", "benchmarks.md")).read()
    table = "\n".join(re.findall(r"```\n(.*?)```", text, re.S))
    prose = text.split("## Reading it", 1)[1]
    in_table = set(re.findall(r"\d+(?:\.\d+)?", table))
    quoted = re.findall(r"(?<![\w.-])(\d+(?:\.\d+)?)(?=\s*(?:x\b|ms\b|us\b|MiB\b|KiB\b|req|requests|%))",
                        prose)
    assert quoted, "the prose quotes the run"
    missing = [q for q in quoted if q not in in_table]
    assert not missing, f"figures not in the table: {missing}"
    assert "target" not in prose.lower(), "no talk of targets the table does not show"


def test_demo_cleans_up_and_shows_the_console_keys(tmp_path, kvm, testkernel):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("DEMO_DIR", None)
    r = subprocess.run(["bash", os.path.join(ROOT, "tools", "demo.sh")], input=b"poweroff\r",
                       capture_output=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert b"READY" in r.stdout, r.stdout[-2000:]
    err = r.stderr.decode()
    assert "Ctrl-A x quits the VM" in err and "Ctrl-A Ctrl-A sends Ctrl-A" in err, err
    assert os.listdir(tmp_path) == [], "the demo's directory is removed"


def test_make_install_puts_the_binary_in_bindir(tmp_path):
    r = subprocess.run(["make", "-s", "-C", ROOT, "install", f"DESTDIR={tmp_path}", "PREFIX=/opt/sv"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    installed = tmp_path / "opt" / "sv" / "bin" / "stratovirt"
    assert os.access(installed, os.X_OK)
    assert open(installed, "rb").read() == open(BIN, "rb").read()
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "make install" in readme and "target/release/stratovirt" in readme
    for unsupported in ("Architectures", "Machine types", "Serial backends", "vCPU hot-plug"):
        assert unsupported in readme, unsupported
