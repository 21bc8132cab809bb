"""The CMOS RTC and the i8042 as Linux's drivers see them: rtc_cmos registers rtc0 with the
host's date, its alarm interrupt fires, time written by the guest sticks, and neither driver's
probe waits out a timeout."""

from __future__ import annotations

import calendar
import re
import time

from nested import L2_APPEND, stratovirt_argv

# The dmesg lines of the two drivers and their probes.
DRIVER_LINE = re.compile(r"i8042|serio|rtc_cmos|rtc0|cmos_init")
# Time between consecutive dmesg lines, in L2, with the line that follows the gap:
# "<gap seconds> <line>".
GAPS = ("dmesg | sed -n 's/^\\[ *\\([0-9.]*\\)\\] /\\1 /p' | "
        "awk '{t = $1 + 0; if (NR > 1) printf \"%.6f %s\\n\", t - p, $0; p = t}'")


def epoch(*ymdhms) -> int:
    return calendar.timegm(ymdhms)


def boot_with_initcall_debug(vms, name):
    # initramfs_async=0: the kernel unpacks the initramfs before the drivers' initcalls, not
    # beside them on the L2's one vCPU. Beside them, traced in L1 (kvm_exit, kvm_pio), the
    # rtc_cmos probe's CMOS accesses stopped for 170 ms while the guest inflated the archive
    # (its inflate loop and `rep movsb`, 465 first-touch page faults), and over 10 boots the
    # probe took 100-200 ms and the gap before "registered as rtc0" 78-121 ms (QEMU microvm
    # in the same L1, unpacking beside its probe too: 45-75 ms). Unpacked first: 38-78 ms
    # (QEMU microvm 22-58 ms), and no driver line after a gap over 41 ms, in 6 boots each.
    return vms.boot(name, stratovirt_argv(append=L2_APPEND + " initcall_debug initramfs_async=0"))


def test_probes_do_not_wait(vms):
    vm = boot_with_initcall_debug(vms, "probes")
    # initcall_debug times every driver probe (the kernel has no symbols to name initcalls).
    probes = dict(re.findall(r"probe of (i8042|rtc_cmos) returned 0 after (\d+) usecs",
                             vm.out("dmesg | grep -E 'probe of (i8042|rtc_cmos) returned'")))
    assert set(probes) == {"i8042", "rtc_cmos"}, probes
    # Without the devices the probes wait out timeouts of 1.1 s (i8042) and 3.5 s (rtc_cmos);
    # with them they took 13-40 ms (i8042) and 38-78 ms (rtc_cmos) here, nested under TCG.
    for name, usecs in probes.items():
        assert int(usecs) < 600_000, f"the {name} probe took {usecs} us"
    dmesg = vm.out("dmesg | grep -E 'i8042|serio|rtc'")
    assert "serio: i8042 KBD port at 0x60,0x64 irq 1" in dmesg
    assert "serio: i8042 AUX port at 0x60,0x64 irq 12" in dmesg
    assert "rtc_cmos rtc_cmos: registered as rtc0" in dmesg
    assert "broken or not accessible" not in dmesg and "Can't read CTR" not in dmesg
    # No line of either driver comes after a gap of more than 100 ms (the bound).
    for line in vm.out(GAPS).splitlines():
        gap, text = line.split(" ", 1)
        if DRIVER_LINE.search(text):
            assert float(gap) < 0.1, f"{float(gap) * 1000:.0f} ms before: {text}"


def test_rtc_reads_the_host_date_and_keeps_what_the_guest_writes(l1, vms):
    vm = vms.boot("rtc", stratovirt_argv())
    host = int(l1.sh("date +%s"))
    guest = int(vm.out("cat /sys/class/rtc/rtc0/since_epoch"))
    assert abs(guest - host) <= 3, (guest, host)
    # The guest sets its clock (SET, then the time registers): the RTC runs on from there.
    vm.sh("date -u -s '2031-06-15 12:34:56' >/dev/null && hwclock -u -w")
    t0 = time.monotonic()
    got = vm.out("hwclock -u -r")
    assert re.search(r"2031", got) and re.search(r"12:3[45]:", got), got
    elapsed = int(vm.out("cat /sys/class/rtc/rtc0/since_epoch")) - epoch(2031, 6, 15, 12, 34, 56)
    assert 0 <= elapsed <= time.monotonic() - t0 + 3, elapsed


def test_rtc_interrupts_reach_the_guest(vms):
    """IRQ 8: the update-ended interrupt about a second ahead at most, and an alarm."""
    vm = vms.boot("rtc-irq", stratovirt_argv())
    irqs = lambda: int(re.search(r"^\s*8:\s+(\d+)", vm.out("cat /proc/interrupts"), re.M).group(1))
    before = irqs()
    m = re.search(r"irq uie after (\d+) ms flags (0x[0-9a-f]+)", vm.out("rtcirq uie", timeout=30))
    assert int(m.group(1)) <= 1500 and int(m.group(2), 16) & 0x10, m.group(0)
    m = re.search(r"irq alarm after (\d+) ms flags (0x[0-9a-f]+)", vm.out("rtcirq alarm 2", timeout=30))
    assert 500 <= int(m.group(1)) <= 3500 and int(m.group(2), 16) & 0x20, m.group(0)
    assert irqs() >= before + 2
