#!/usr/bin/env python3
"""Builds what the real-Linux suite boots, into a cache outside the repository.

Everything comes from Debian packages fetched with `apt-get download` (nothing is installed into
the host's /boot or /lib/modules) and from sources in this repository:

- the L2 guest kernel: Debian's linux-source-6.1, `make tinyconfig` plus microvm-6.1.config
  (bzImage and ELF vmlinux);
- the L1 kernel: Debian's cloud-amd64 kernel, which loads kvm_amd under QEMU TCG;
- the L1 initramfs: busybox, the kernel modules L1 needs, and l1/init;
- the L2 userspace: busybox, l2/init and the small static C tools in tools/.

Each artefact lives in a directory named by a hash of its inputs (package versions, config,
scripts), so a second run rebuilds nothing and a changed input rebuilds only what depends on it.

    python3 tests/linux/build.py          # builds what is missing, prints the paths as JSON

The cache is $STRATOVIRT_LINUX_CACHE, else $XDG_CACHE_HOME/stratovirt-linux, else
~/.cache/stratovirt-linux.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
KCONFIG = os.path.join(HERE, "microvm-6.1.config")
# Bump when the build steps below change in a way the hashed inputs do not show.
RECIPE = "3"


def cache_root() -> str:
    if os.environ.get("STRATOVIRT_LINUX_CACHE"):
        return os.environ["STRATOVIRT_LINUX_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stratovirt-linux")


def log(msg: str) -> None:
    print(f"[linux-build {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def digest(*parts) -> str:
    h = hashlib.sha256(RECIPE.encode())
    for p in parts:
        if isinstance(p, str) and os.path.isfile(p):
            with open(p, "rb") as f:
                h.update(f.read())
        elif isinstance(p, str) and os.path.isdir(p):
            for base, dirs, files in sorted(os.walk(p)):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.join(base, name)
                    h.update(os.path.relpath(path, p).encode())
                    with open(path, "rb") as f:
                        h.update(f.read())
        else:
            h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class Step:
    """A cache directory that is either complete (has .done) or rebuilt from scratch."""

    def __init__(self, name: str, key: str):
        self.dir = os.path.join(cache_root(), f"{name}-{key}")
        self.name = name

    @property
    def done(self) -> bool:
        return os.path.exists(os.path.join(self.dir, ".done"))

    def begin(self) -> str:
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        return self.dir

    def finish(self) -> None:
        open(os.path.join(self.dir, ".done"), "w").close()
        # Older builds of the same artefact are dead weight.
        for old in glob.glob(os.path.join(cache_root(), f"{self.name}-*")):
            if old != self.dir:
                shutil.rmtree(old, ignore_errors=True)


# -- Debian packages --------------------------------------------------------------------------


def _apt(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, **kw)


def candidate(pkg: str) -> str:
    """The version apt would download for `pkg` ('' when unknown)."""
    out = subprocess.run(["apt-cache", "policy", pkg], capture_output=True, text=True).stdout
    m = re.search(r"Candidate:\s*(\S+)", out)
    return m.group(1) if m and m.group(1) != "(none)" else ""


def resolve_image(flavour: str) -> str:
    """linux-image-<flavour> is a metapackage; the real kernel package is its dependency."""
    out = subprocess.run(["apt-cache", "depends", f"linux-image-{flavour}"],
                         capture_output=True, text=True).stdout
    m = re.search(r"Depends:\s*(linux-image-\d\S*)", out)
    if not m:
        raise SystemExit(f"apt knows no linux-image-{flavour}: run apt-get update")
    return m.group(1)


def ensure_apt_lists(pkgs: list[str]) -> None:
    if all(candidate(p) for p in pkgs):
        return
    log("apt-get update (package lists are missing or stale)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    run(sudo + ["apt-get", "update", "-qq"])


def fetch_deb(pkg: str) -> str:
    """Downloads `pkg` (the candidate version) into the cache; returns the .deb path."""
    ver = candidate(pkg)
    if not ver:
        raise SystemExit(f"apt has no candidate for {pkg}")
    debs = os.path.join(cache_root(), "debs")
    os.makedirs(debs, exist_ok=True)
    want = f"{pkg}_{ver.replace(':', '%3a')}_"
    have = [f for f in os.listdir(debs) if f.startswith(want) and f.endswith(".deb")]
    if have:
        return os.path.join(debs, have[0])
    log(f"apt-get download {pkg}={ver}")
    with tempfile.TemporaryDirectory(dir=debs) as tmp:
        r = _apt(["download", f"{pkg}={ver}"], cwd=tmp)
        if r.returncode != 0:
            raise SystemExit(f"apt-get download {pkg}={ver} failed: {r.stderr.strip()}")
        (name,) = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        # Older versions of the same package are dead weight.
        for old in glob.glob(os.path.join(debs, f"{pkg}_*.deb")):
            os.unlink(old)
        os.rename(os.path.join(tmp, name), os.path.join(debs, name))
    return os.path.join(debs, name)


# -- The L2 guest kernel ----------------------------------------------------------------------


def wanted_options(path: str) -> dict[str, str]:
    """CONFIG_X -> 'y' / value / 'n' from a fragment."""
    want = {}
    for line in open(path):
        line = line.strip()
        m = re.match(r"(CONFIG_\w+)=(.*)", line)
        if m:
            want[m.group(1)] = m.group(2)
        m = re.match(r"# (CONFIG_\w+) is not set", line)
        if m:
            want[m.group(1)] = "n"
    return want


def check_config(config: str, fragment: str) -> None:
    """Fails unless every option of the fragment took (Kconfig drops what it cannot satisfy)."""
    have = {}
    for line in open(config):
        m = re.match(r"(CONFIG_\w+)=(.*)", line.strip())
        if m:
            have[m.group(1)] = m.group(2)
    wrong = [f"{k}={v} (got {have.get(k, 'n')})" for k, v in wanted_options(fragment).items()
             if have.get(k, "n") != v]
    if wrong:
        raise SystemExit("the guest kernel config lost options: " + ", ".join(wrong))


def build_guest_kernel(src_deb: str) -> dict:
    step = Step("kernel", digest(os.path.basename(src_deb), KCONFIG))
    out = {"bzimage": os.path.join(step.dir, "bzImage"),
           "vmlinux": os.path.join(step.dir, "vmlinux"),
           "config": os.path.join(step.dir, "config")}
    if step.done:
        return out
    d = step.begin()
    t0 = time.monotonic()
    log(f"building the guest kernel from {os.path.basename(src_deb)} (about 3 minutes on 2 cores)")
    work = os.path.join(d, "src")
    os.makedirs(work)
    run(["dpkg-deb", "-x", src_deb, work])
    (tarball,) = glob.glob(os.path.join(work, "usr/src/linux-source-*.tar.xz"))
    run(["tar", "xf", tarball, "-C", work])
    (tree,) = [p for p in glob.glob(os.path.join(work, "linux-source-*")) if os.path.isdir(p)]
    jobs = str(os.cpu_count() or 2)
    logf = open(os.path.join(d, "build.log"), "w")
    mk = lambda *a: run(["make", "-C", tree, *a], stdout=logf, stderr=subprocess.STDOUT)
    mk("tinyconfig")
    run([os.path.join(tree, "scripts/kconfig/merge_config.sh"), "-m", "-O", tree,
         os.path.join(tree, ".config"), KCONFIG], stdout=logf, stderr=subprocess.STDOUT, cwd=tree)
    mk("olddefconfig")
    check_config(os.path.join(tree, ".config"), KCONFIG)
    try:
        mk(f"-j{jobs}", "bzImage", "vmlinux")
    except subprocess.CalledProcessError:
        logf.close()
        tail = open(os.path.join(d, "build.log")).read()[-4000:]
        raise SystemExit(f"guest kernel build failed:\n{tail}")
    shutil.copy(os.path.join(tree, "arch/x86/boot/bzImage"), out["bzimage"])
    run(["objcopy", "--strip-all", os.path.join(tree, "vmlinux"), out["vmlinux"]])
    shutil.copy(os.path.join(tree, ".config"), out["config"])
    shutil.rmtree(work)
    step.finish()
    log(f"guest kernel built in {time.monotonic() - t0:.0f} s: bzImage "
        f"{os.path.getsize(out['bzimage'])} B, vmlinux {os.path.getsize(out['vmlinux'])} B")
    return out


# -- busybox, the L1 kernel and initramfs, the L2 userspace -----------------------------------

L1_INIT = os.path.join(HERE, "l1", "init")
L2_INIT = os.path.join(HERE, "l2", "init")
# Small static C programs for L2 (busybox lacks them): one binary per tools/NAME.c.
TOOLS = os.path.join(HERE, "tools")
# What L1 loads: its own virtio devices (payload disk, the agent's NIC), KVM, and what the device
# tests need (vhost backends, TAP, veth, bridges). modules.dep brings their dependencies.
L1_MODULES = ["virtio_pci", "virtio_blk", "virtio_net", "kvm_amd", "vhost_net", "vhost_vsock",
              "tun", "veth", "bridge"]


def extract_busybox(deb: str) -> str:
    step = Step("busybox", digest(os.path.basename(deb)))
    path = os.path.join(step.dir, "busybox")
    if step.done:
        return path
    d = step.begin()
    run(["dpkg-deb", "-x", deb, os.path.join(d, "x")])
    shutil.copy(os.path.join(d, "x", "bin", "busybox"), path)
    shutil.rmtree(os.path.join(d, "x"))
    step.finish()
    return path


def busybox_root(root: str, busybox: str) -> None:
    """A root directory with busybox and a link for each of its applets."""
    for sub in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "run", "etc",
                "mnt", "root"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for a in applets:
        link = os.path.join(root, "bin", a)
        if a != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)


def mkcpio(root: str, out: str, busybox: str) -> None:
    """A gzip'd newc cpio of `root` (the initramfs format), made with busybox's cpio."""
    names = subprocess.run(["find", "."], cwd=root, capture_output=True, text=True,
                           check=True).stdout
    with open(out + ".tmp", "wb") as f:
        cpio = subprocess.Popen([busybox, "cpio", "-o", "-H", "newc"], cwd=root,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        gz = subprocess.Popen(["gzip", "-1"], stdin=cpio.stdout, stdout=f)
        cpio.stdout.close()
        cpio.communicate(names.encode())
        if gz.wait() != 0 or cpio.returncode != 0:
            raise SystemExit(f"cpio of {root} failed")
    os.rename(out + ".tmp", out)


def module_closure(tree: str, kver: str, names: list[str]) -> list[str]:
    """Paths (relative to lib/modules/KVER) of `names` and everything modules.dep says they
    need; a built-in module needs nothing."""
    base = os.path.join(tree, "lib", "modules", kver)
    deps = {}
    for line in open(os.path.join(base, "modules.dep")):
        mod, _, rest = line.partition(":")
        deps[mod.strip()] = rest.split()
    by_name = {re.sub(r"\.ko(\..*)?$", "", os.path.basename(m)).replace("-", "_"): m for m in deps}
    builtin = open(os.path.join(base, "modules.builtin")).read()
    out = []
    for n in names:
        key = n.replace("-", "_")
        if key not in by_name:
            if re.search(rf"/{re.escape(n)}\.ko$", builtin, re.M) or \
                    re.search(rf"/{re.escape(n.replace('_', '-'))}\.ko$", builtin, re.M):
                continue
            raise SystemExit(f"L1 kernel {kver} has no module {n}")
        mod = by_name[key]
        for m in [mod, *deps[mod]]:
            if m not in out:
                out.append(m)
    return out


def build_l1(image_deb: str, busybox: str) -> dict:
    step = Step("l1", digest(os.path.basename(image_deb), busybox, L1_INIT, " ".join(L1_MODULES)))
    out = {"kernel": os.path.join(step.dir, "vmlinuz"),
           "initramfs": os.path.join(step.dir, "initramfs.cpio.gz")}
    if step.done:
        return out
    d = step.begin()
    log(f"building the L1 initramfs from {os.path.basename(image_deb)}")
    tree = os.path.join(d, "tree")
    run(["dpkg-deb", "-x", image_deb, tree])
    (kver,) = os.listdir(os.path.join(tree, "lib", "modules"))
    run([busybox, "depmod", "-b", tree, kver])
    root = os.path.join(d, "root")
    busybox_root(root, busybox)
    mods = os.path.join("lib", "modules", kver)
    for m in module_closure(tree, kver, L1_MODULES):
        os.makedirs(os.path.join(root, mods, os.path.dirname(m)), exist_ok=True)
        shutil.copy(os.path.join(tree, mods, m), os.path.join(root, mods, m))
    for f in ("modules.builtin", "modules.order"):
        shutil.copy(os.path.join(tree, mods, f), os.path.join(root, mods, f))
    run([busybox, "depmod", "-b", root, kver])
    shutil.copy(L1_INIT, os.path.join(root, "init"))
    os.chmod(os.path.join(root, "init"), 0o755)
    mkcpio(root, out["initramfs"], busybox)
    shutil.copy(os.path.join(tree, "boot", f"vmlinuz-{kver}"), out["kernel"])
    shutil.rmtree(tree)
    shutil.rmtree(root)
    step.finish()
    return out


def build_l2_userspace(busybox: str) -> dict:
    """The L2 root directory (for `mkfs.ext4 -d`) and the same tree as an initramfs."""
    step = Step("l2", digest(busybox, L2_INIT, TOOLS))
    out = {"root": os.path.join(step.dir, "root"),
           "initramfs": os.path.join(step.dir, "initramfs.cpio.gz")}
    if step.done:
        return out
    d = step.begin()
    root = out["root"]
    busybox_root(root, busybox)
    shutil.copy(L2_INIT, os.path.join(root, "init"))
    os.chmod(os.path.join(root, "init"), 0o755)
    os.symlink("/init", os.path.join(root, "sbin", "init"))
    for src in sorted(glob.glob(os.path.join(TOOLS, "*.c"))):
        name = os.path.splitext(os.path.basename(src))[0]
        r = subprocess.run(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o",
                            os.path.join(root, "usr", "bin", name), src],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"building tools/{name}.c failed:\n{r.stderr}")
    mkcpio(root, out["initramfs"], busybox)
    step.finish()
    return out


def build_all() -> dict:
    l1_image = None
    pkgs = ["linux-source-6.1", "busybox-static", "linux-image-cloud-amd64"]
    ensure_apt_lists(pkgs)
    l1_image = resolve_image("cloud-amd64")
    kernel = build_guest_kernel(fetch_deb("linux-source-6.1"))
    busybox = extract_busybox(fetch_deb("busybox-static"))
    return {
        "kernel": kernel,
        "busybox": busybox,
        "l1": build_l1(fetch_deb(l1_image), busybox),
        "l2": build_l2_userspace(busybox),
    }


if __name__ == "__main__":
    print(json.dumps(build_all(), indent=2))
