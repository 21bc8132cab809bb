#!/usr/bin/env python3
"""Checks that no file in the repository names a path outside it (part of `make lint`).

A fresh clone has only what is in the repository, so every reference a reader or a script
follows must resolve inside it. Flagged, with file and line:

- absolute paths into the project machines' workspace (`/work/...`);  # check-paths: ignore
- relative paths (`../x`) that leave the repository or name nothing in it;  # check-paths: ignore
- Markdown links to files that are not in the repository;
- names of Markdown documents (`SOMETHING.md`) that no file in the repository has.  # check-paths: ignore

Example paths a user is meant to substitute (`/path/to/vmlinux.bin`, `/tmp/vm.sock`) and
runtime locations (a cache directory) are not references and are not flagged. A line that
holds `check-paths: ignore` is skipped (this file's patterns, the check's own test fixtures).

    python3 tools/check-paths.py [ROOT]     # exit 1 and one line per finding
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

WORKSPACE = re.compile(r"(?<![\w.$-])/work/[\w./-]*")  # check-paths: ignore
RELATIVE = re.compile(r"(?<![\w.)}$/-])(?:\.\./)+[\w./-]*[\w-]")
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
MD_NAME = re.compile(r"(?<![\w/.:-])([\w/.-]*[A-Za-z0-9_-]\.md)\b")
SKIP_SUFFIXES = (".lock",)
IGNORE = "check-paths: " + "ignore"


def tracked_files(root: str) -> list[str]:
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], capture_output=True,
                             check=True).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = []
        for base, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in (".git", "target", ".venv")]
            names += [os.path.relpath(os.path.join(base, f), root) for f in files]
    return [n for n in names if os.path.isfile(os.path.join(root, n))]


def text_of(path: str) -> str | None:
    with open(path, "rb") as f:
        data = f.read()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def inside(root: str, path: str) -> bool:
    root = os.path.realpath(root)
    return os.path.commonpath([root, os.path.realpath(path)]) == root


def check(root: str) -> list[str]:
    root = os.path.abspath(root)
    files = tracked_files(root)
    basenames = {os.path.basename(f) for f in files}
    findings = []
    for rel in files:
        if rel.endswith(SKIP_SUFFIXES):
            continue
        text = text_of(os.path.join(root, rel))
        if text is None:
            continue
        here = os.path.dirname(os.path.join(root, rel))
        for n, line in enumerate(text.splitlines(), 1):
            if IGNORE in line:
                continue

            def flag(what: str, ref: str) -> None:
                findings.append(f"{rel}:{n}: {what}: {ref}")

            for m in WORKSPACE.finditer(line):
                flag("names a path outside the repository", m.group(0).rstrip("."))
            for m in RELATIVE.finditer(line):
                target = os.path.normpath(os.path.join(here, m.group(0)))
                if not inside(root, target):
                    flag("relative path leaves the repository", m.group(0))
                elif not os.path.exists(target):
                    flag("relative path names nothing in the repository", m.group(0))
            if rel.endswith(".md"):
                for m in MD_LINK.finditer(line):
                    ref = m.group(1)
                    if re.match(r"^[a-z][a-z0-9+.-]*:", ref):
                        continue  # a URL
                    target = os.path.normpath(os.path.join(here, ref))
                    if not inside(root, target) or not os.path.exists(target):
                        flag("link to a file not in the repository", ref)
            for m in MD_NAME.finditer(line):
                name = m.group(1)
                if os.path.basename(name) not in basenames:
                    flag("names a document that is not in the repository", name)
    return findings


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    findings = check(root)
    for f in findings:
        print(f)
    if findings:
        print(f"check-paths: {len(findings)} reference(s) to paths outside the repository",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
