#!/usr/bin/env bash
# Boots the demo VM: the bundled test kernel, serial console on this terminal, a QMP socket,
# a scratch disk.
# Type `help` at the guest's prompt; `poweroff` ends the VM, and so does Ctrl-A x. From another
# terminal:
#   ncat -U "$DEMO_DIR/qmp.sock"   (or: socat - UNIX-CONNECT:$DEMO_DIR/qmp.sock)
# The demo's directory (socket, log, disk) is removed when the VM ends, unless DEMO_DIR named
# one of your own.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${DEMO_DIR:-}" ]; then
    DEMO_DIR=$(mktemp -d "${TMPDIR:-/tmp}/stratovirt-demo.XXXXXX")
    trap 'rm -rf "$DEMO_DIR"' EXIT
fi
# A 64 MiB sparse scratch disk: vda in the guest (`blk list`, `blk write vda 0 8 1`, ...).
[ -e "$DEMO_DIR/scratch.img" ] || truncate -s 64M "$DEMO_DIR/scratch.img"
echo "demo VM: QMP socket $DEMO_DIR/qmp.sock, log $DEMO_DIR/vm.log, disk $DEMO_DIR/scratch.img" >&2
echo "console: Ctrl-A x quits the VM, Ctrl-A Ctrl-A sends Ctrl-A, Ctrl-A h lists the keys" >&2
status=0
target/release/stratovirt \
    -name demo \
    -kernel target/guest/testkernel.bin \
    -append "console=ttyS0 reboot=k panic=1" \
    -smp "${DEMO_CPUS:-2}" -m "${DEMO_MEM:-256}" \
    -drive "id=scratch,file=$DEMO_DIR/scratch.img,direct=off" \
    -device virtio-blk-device,drive=scratch \
    -qmp "unix:$DEMO_DIR/qmp.sock,server,nowait" \
    -serial stdio \
    -D "$DEMO_DIR/vm.log" || status=$?
exit "$status"
