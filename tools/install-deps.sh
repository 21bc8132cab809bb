#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian machine.
set -euo pipefail
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v objcopy >/dev/null || need+=(binutils)
command -v socat >/dev/null || need+=(socat)
command -v ncat >/dev/null || need+=(ncat)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The toolchain and the guest target named in rust-toolchain.toml.
rustup show active-toolchain >/dev/null
rustup target list --installed | grep -qx x86_64-unknown-none || rustup target add x86_64-unknown-none
