#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian machine.
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v objcopy >/dev/null || need+=(binutils)
command -v socat >/dev/null || need+=(socat)
command -v ncat >/dev/null || need+=(ncat)
command -v ip >/dev/null || need+=(iproute2)
# The real-Linux suite (tests/linux/build.py): building the guest kernel, ext4 images made with
# mkfs.ext4 -d and read with debugfs, static L2 tools, unpacking Debian packages.
command -v flex >/dev/null || need+=(flex)
command -v bison >/dev/null || need+=(bison)
command -v bc >/dev/null || need+=(bc)
[ -e /usr/include/libelf.h ] || need+=(libelf-dev)
command -v make >/dev/null || need+=(make)
command -v gcc >/dev/null || need+=(gcc)
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || need+=(libc6-dev)
command -v xz >/dev/null || need+=(xz-utils)
{ command -v mkfs.ext4 && command -v debugfs; } >/dev/null || need+=(e2fsprogs)
command -v gzip >/dev/null || need+=(gzip)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The toolchain and the guest target named in rust-toolchain.toml.
rustup show active-toolchain >/dev/null
rustup target list --installed | grep -qx x86_64-unknown-none || rustup target add x86_64-unknown-none
