"""QMP against a booted test kernel: the seeds' lifecycle and query transcripts replayed over a
raw socket, real pausing (the guest's ticks stop), guest poweroff events, many clients, bad
input, and the third-party `qemu.qmp` client."""
import asyncio
import json
import os
import select
import time

import pytest

from svm import BIN, RawQmp, boot, stratovirt_cmd

GREETING = b'{"QMP":{"version":{"qemu":{"micro":1,"minor":0,"major":4},"package":""},"capabilities":[]}}'


@pytest.fixture
def vm2(tmp_path):
    """A 2-vCPU VM with a QMP socket; yields (vm, socket path)."""
    sock = str(tmp_path / "vm.sock")
    vm, _ = boot(stratovirt_cmd(cpus=2, qmp=sock))
    yield vm, sock
    vm.kill()


def same_shape(actual, expected, ignore=("timestamp", "thread_id")):
    """Structural comparison: same keys, same values, except the ignored keys' values."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and list(actual) == list(expected), (actual, expected)
        for k in expected:
            if k not in ignore:
                same_shape(actual[k], expected[k], ignore)
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (actual, expected)
        for a, e in zip(actual, expected):
            same_shape(a, e, ignore)
    else:
        assert actual == expected, (actual, expected)


def open_fds(pid):
    """fd number -> what it points at."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            pass
    return out


def ticks(vm):
    return int(vm.cmd("ticks")[0].split("=")[1])


def test_seed_transcripts(vm2):
    vm, sock = vm2
    q = RawQmp(sock)
    assert q.greeting.rstrip(b"\r\n") == GREETING
    # Seed 003: "Querying VM Status" (no qmp_capabilities first, as a person would type).
    ev, r = q.execute("query-status")
    same_shape(r, {"return": {"running": True, "singlestep": False, "status": "running"}})
    # "Querying Topology Information" with two vCPUs.
    ev, r = q.execute("query-cpus")
    same_shape(r, {"return": [
        {"CPU": 0, "arch": "x86", "current": True, "halted": False,
         "props": {"core-id": 0, "socket-id": 0, "thread-id": 0},
         "qom_path": "/machine/unattached/device[0]", "thread_id": 8439},
        {"CPU": 1, "arch": "x86", "current": True, "halted": False,
         "props": {"core-id": 0, "socket-id": 1, "thread-id": 0},
         "qom_path": "/machine/unattached/device[1]", "thread_id": 8440}]})
    # The thread ids are this process's vCPU threads.
    for cpu in r["return"]:
        comm = open(f"/proc/{vm.proc.pid}/task/{cpu['thread_id']}/comm").read().strip()
        assert comm == f"vcpu{cpu['CPU']}"
    ev, r = q.execute("query-hotpluggable-cpus")
    same_shape(r, {"return": [
        {"props": {"core-id": 0, "socket-id": 0, "thread-id": 0},
         "qom-path": "/machine/unattached/device[0]", "type": "host-x86-cpu", "vcpus-count": 1},
        {"props": {"core-id": 0, "socket-id": 1, "thread-id": 0},
         "qom-path": "/machine/unattached/device[1]", "type": "host-x86-cpu", "vcpus-count": 1}]})
    # "Suspending a VM": the STOP event, then the return.
    ev, r = q.execute("stop")
    assert len(ev) == 1
    same_shape(ev[0], {"event": "STOP", "data": {}, "timestamp": {}})
    assert set(ev[0]["timestamp"]) == {"seconds", "microseconds"}
    assert abs(ev[0]["timestamp"]["seconds"] - time.time()) < 60
    same_shape(r, {"return": {}})
    ev, r = q.execute("query-status")
    same_shape(r, {"return": {"running": False, "singlestep": False, "status": "paused"}})
    # "Resuming a VM".
    ev, r = q.execute("cont")
    same_shape(ev, [{"event": "RESUME", "data": {}, "timestamp": {}}])
    same_shape(r, {"return": {}})
    # "Exiting a VM": the return, then SHUTDOWN, then the process exits 0.
    ev, r = q.execute("quit")
    same_shape(r, {"return": {}})
    same_shape(q.recv(), {"event": "SHUTDOWN", "data": {"guest": False, "reason": "host-qmp-quit"},
                          "timestamp": {}})
    assert vm.wait_exit(10) == 0
    assert not os.path.exists(sock)


def test_stop_really_pauses_the_guest(vm2):
    vm, sock = vm2
    q = RawQmp(sock)
    q.execute("qmp_capabilities")
    t0 = ticks(vm)
    time.sleep(1.0)
    running_rate = ticks(vm) - t0
    assert running_rate > 0
    t1 = ticks(vm)
    _, r = q.execute("stop")
    assert r == {"return": {}}
    vm.send_line("ticks")
    time.sleep(1.0)
    assert "ticks=" not in vm.output_since_last_command(), "a paused guest must not answer"
    _, r = q.execute("cont")
    vm.wait_for(r"ticks=(\d+)", 10)
    time.sleep(0.1)
    t2 = ticks(vm)
    assert t2 - t1 < running_rate / 2 + 5, (t1, t2, running_rate)
    # Wrong-state commands are errors and change nothing.
    _, r = q.execute("cont")
    assert r["error"]["class"] == "GenericError"
    q.execute("stop")
    _, r = q.execute("stop")
    assert r["error"]["class"] == "GenericError"
    _, r = q.execute("query-status")
    assert r["return"]["status"] == "paused"
    q.execute("cont")


def test_guest_poweroff_sends_shutdown_event(vm2):
    vm, sock = vm2
    q = RawQmp(sock)
    q.execute("qmp_capabilities")
    vm.send_line("poweroff")
    e = q.recv()
    assert e["event"] == "SHUTDOWN" and e["data"]["guest"] is True
    assert e["data"]["reason"] in ("guest-reset", "guest-shutdown")
    assert vm.wait_exit(10) == 0


def test_fifty_clients_and_bad_input_leave_the_vm_answering(vm2):
    vm, sock = vm2
    pid = vm.proc.pid
    # Baseline once the QMP thread and the event loop are up (they start after the guest).
    warm = RawQmp(sock)
    warm.execute("query-status")
    warm.close()
    time.sleep(0.3)
    fds_before = open_fds(pid)
    for i in range(50):
        c = RawQmp(sock)
        if i % 3 == 0:
            c.send(b"\xff\xfe garbage \x00")
        elif i % 3 == 1:
            c.sock.sendall(b'{"execute":"query-sta')  # vanish mid-line
        else:
            c.execute("query-status")
        c.close()
    staller = RawQmp(sock)
    staller.sock.sendall(b'{"execute": "query-st')  # stalls mid-line, stays connected
    q = RawQmp(sock)
    q.send("this is not json")
    r = q.recv()
    assert r["error"]["class"] == "GenericError" and "JSON parse error" in r["error"]["desc"]
    q.send(b"x" * (2 << 20))
    r = q.recv()
    assert r["error"]["class"] == "GenericError"
    _, r = q.execute("query-status", id={"any": ["json", 1]})
    assert r["id"] == {"any": ["json", 1]} and r["return"]["status"] == "running"
    _, r = q.execute("stop", arguments={"force": True})
    assert r["error"]["class"] == "GenericError"
    _, r = q.execute("query-status")
    assert r["return"]["status"] == "running", "a rejected command has no side effect"
    _, r = q.execute("no-such-command")
    assert r["error"]["class"] == "CommandNotFound"
    assert vm.cmd("ticks")[-1] == "OK", "the guest still runs"
    staller.close()
    q.close()
    time.sleep(0.3)
    fds_after = open_fds(pid)
    assert fds_after == fds_before, f"leaked descriptors: {set(fds_after.items()) - set(fds_before.items())}"


def test_events_only_after_first_command(vm2):
    vm, sock = vm2
    silent = RawQmp(sock)
    q = RawQmp(sock)
    q.execute("stop")
    q.execute("cont")
    readable, _, _ = select.select([silent.sock], [], [], 0.5)
    assert not readable, "no event before the client's first command"
    _, r = silent.execute("qmp_capabilities", arguments={"enable": []})
    assert r == {"return": {}}
    q.execute("stop")
    e = silent.recv()
    assert e["event"] == "STOP"
    q.execute("cont")


def test_qemu_qmp_library_drives_the_vm(vm2):
    from qemu.qmp import QMPClient

    vm, sock = vm2

    async def scenario():
        qmp = QMPClient("stratovirt-test")
        await qmp.connect(sock)
        status = await qmp.execute("query-status")
        assert status["status"] == "running"
        with qmp.listener("STOP") as listener:
            await qmp.execute("stop")
            event = await asyncio.wait_for(listener.get(), 10)
            assert event["event"] == "STOP"
        assert (await qmp.execute("query-status"))["status"] == "paused"
        await qmp.execute("cont")
        cpus = await qmp.execute("query-cpus")
        assert [c["CPU"] for c in cpus] == [0, 1]
        version = await qmp.execute("query-version")
        assert version["qemu"] == {"micro": 1, "minor": 0, "major": 4}
        names = {c["name"] for c in await qmp.execute("query-commands")}
        assert {"query-status", "stop", "cont", "quit", "query-cpus"} <= names
        await qmp.execute("quit")
        try:
            await qmp.disconnect()
        except EOFError:
            # The VMM closed the stream after quit: expected (QEMU's own machine.py accepts the
            # same after issuing quit).
            pass

    asyncio.run(scenario())
    assert vm.wait_exit(10) == 0


