//! The balloon behind a real MMIO transport, driven the way a guest driver does.

use super::config::feature;
use super::test_utils::*;
use super::*;
use crate::bus::BusDevice;
use crate::virtio::features::RING_EVENT_IDX;
use crate::virtio::MmioTransport;
use std::sync::mpsc;

const STATS: u64 = 1 << feature::STATS_VQ;
const OOM: u64 = 1 << feature::DEFLATE_ON_OOM;
const REPORT: u64 = 1 << feature::PAGE_REPORTING;
const NEEDS_RESET: u32 = 0x40;

fn balloon(m: &GuestMemoryMmap, oom: bool, report: bool) -> (MmioTransport, BalloonHandle) {
    let b = Balloon::new(m, oom, report).unwrap();
    let h = b.handle();
    (transport(m, b), h)
}

fn reports(h: &BalloonHandle) -> u64 {
    lock(&h.shared.stats).reports
}

fn config(t: &mut MmioTransport) -> (u32, u32) {
    (r(t, 0x100), r(t, 0x104))
}

/// The irqfd fired and InterruptStatus has `bit`; acknowledges it.
fn interrupted(t: &mut MmioTransport, bit: u32) -> bool {
    if wait(t.interrupt().irqfd(), SECOND).is_none() {
        return false;
    }
    let st = r(t, 0x60);
    w(t, 0x64, st);
    st & bit != 0
}

#[test]
fn identification_features_and_queues() {
    let m = mem();
    let (mut t, h) = balloon(&m, false, false);
    assert_eq!(r(&mut t, 0x8), 5, "balloon device id");
    let f = offered(&mut t);
    assert_ne!(f & STATS, 0);
    assert_eq!(f & (OOM | REPORT), 0);
    assert_ne!(f & (1 << 32), 0);
    // Inflate, deflate and statistics queues; no fourth.
    for (i, max) in [(0, 256), (1, 256), (2, 256), (3, 0)] {
        w(&mut t, 0x30, i);
        assert_eq!(r(&mut t, 0x34), max, "queue {i}");
    }
    assert_eq!(config(&mut t), (0, 0));
    assert_eq!(h.ram_bytes(), 16 * MIB);
    assert_eq!(h.actual_bytes(), 16 * MIB);

    let (mut t, _) = balloon(&m, true, true);
    let f = offered(&mut t);
    assert_eq!(f & (OOM | REPORT | STATS), OOM | REPORT | STATS);
    w(&mut t, 0x30, 3);
    assert_eq!(r(&mut t, 0x34), 256, "reporting queue");
    assert!(thread_names().iter().any(|n| n == "balloon"));
    let e = t.device().can_save().unwrap_err();
    assert!(e.contains("balloon"), "{e}");
}

#[test]
fn the_target_reaches_the_driver_with_a_config_interrupt() {
    let m = mem();
    let (mut t, h) = balloon(&m, false, false);
    // Before the driver starts: only the configuration space changes.
    assert_eq!(h.set_target(12 * MIB), 12 * MIB);
    assert_eq!(config(&mut t).0, 1024);
    let gen = r(&mut t, 0xfc);
    let (qi, qd) = (TestQueue::new(&m, ring(0)), TestQueue::new(&m, ring(1)));
    start(&mut t, 0, &[&qi, &qd]);
    assert_eq!(h.set_target(10 * MIB), 10 * MIB);
    assert!(interrupted(&mut t, 2), "config change");
    assert_eq!(config(&mut t).0, 1536);
    assert_ne!(r(&mut t, 0xfc), gen, "generation moved");
    // Above RAM means RAM; a partial page rounds down.
    assert_eq!(h.set_target(u64::MAX), 16 * MIB);
    assert_eq!(config(&mut t).0, 0);
    assert_eq!(h.set_target(10 * MIB + 100), 10 * MIB);
    assert_eq!(h.target_bytes(), 10 * MIB);
    // The same target again changes nothing.
    assert!(interrupted(&mut t, 2));
    let gen = r(&mut t, 0xfc);
    h.set_target(10 * MIB);
    assert_eq!(r(&mut t, 0xfc), gen);
}

#[test]
fn inflate_releases_pages_and_deflate_gives_back_zeroed_ones() {
    let m = mem();
    let (mut t, h) = balloon(&m, false, false);
    let (mut qi, mut qd) = (TestQueue::new(&m, ring(0)), TestQueue::new(&m, ring(1)));
    start(&mut t, 0, &[&qi, &qd]);
    let (a, b) = (4 * MIB, HIGH + MIB);
    fill(&m, a, 16);
    fill(&m, b, 4);
    let frames: Vec<u32> = (0..16)
        .map(|i| frame(a + i * 4096))
        .chain((0..4).map(|i| frame(b + i * 4096)))
        .collect();
    let d = frame_array(&m, BUFFERS, &frames);
    let head = qi.push_chain(&[d]);
    kick(&mut t, 0);
    assert!(interrupted(&mut t, 1), "used buffer");
    assert_eq!(qi.used(), vec![(u32::from(head), 0)]);
    assert_eq!(h.pages_in_balloon(), 20);
    write_actual(&mut t, 20);
    assert_eq!(h.actual_bytes(), 16 * MIB - 20 * 4096);

    let d = frame_array(&m, BUFFERS + 0x1000, &frames[..8]);
    qd.push_chain(&[d]);
    kick(&mut t, 1);
    assert!(interrupted(&mut t, 1));
    assert_eq!(qd.used_idx(), 1);
    assert_eq!(h.pages_in_balloon(), 12);
    for i in 0..16 {
        assert_eq!(word(&m, a + i * 4096), 0, "page {i} reads as zero");
    }
    assert_eq!(word(&m, a + 16 * 4096), 0, "untouched page past the run");
    fill(&m, a + 16 * 4096, 1);
    assert_eq!(word(&m, a + 16 * 4096), 0x5a5a_0000, "other memory works");
}

#[test]
fn actual_changes_are_announced_at_once_then_once_a_second_with_the_last_value() {
    let m = mem();
    let (mut t, h) = balloon(&m, false, false);
    let (tx, rx) = mpsc::channel();
    h.set_change_sink(Arc::new(move |bytes| {
        let _ = tx.send(bytes);
    }));
    let (qi, qd) = (TestQueue::new(&m, ring(0)), TestQueue::new(&m, ring(1)));
    start(&mut t, 0, &[&qi, &qd]);
    write_actual(&mut t, 256);
    assert_eq!(rx.recv_timeout(SECOND).unwrap(), 15 * MIB);
    // A burst: nothing until the second is over, then the last value once.
    for pages in [512, 768, 1024] {
        write_actual(&mut t, pages);
    }
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    assert_eq!(rx.recv_timeout(SECOND).unwrap(), 12 * MIB);
    assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err());
    // Writes that leave actual as it is say nothing; other config fields are read-only.
    write_actual(&mut t, 1024);
    t.write(0x100, &7u32.to_le_bytes());
    assert_eq!(config(&mut t), (0, 1024));
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    // A driver that claims more than RAM: the guest's memory reads as zero, not negative.
    write_actual(&mut t, u32::MAX);
    assert_eq!(rx.recv_timeout(SECOND).unwrap(), 0);
    assert_eq!(h.actual_bytes(), 0);
}

#[test]
fn statistics_come_from_the_buffer_the_driver_posts() {
    let m = mem();
    let (mut t, h) = balloon(&m, false, false);
    assert_eq!(
        h.statistics(Duration::from_millis(10)),
        Err(StatsError::NoQueue)
    );
    let (qi, qd, mut qs) = (
        TestQueue::new(&m, ring(0)),
        TestQueue::new(&m, ring(1)),
        TestQueue::new(&m, ring(2)),
    );
    // Linux posts a first report before DRIVER_OK.
    let d = stats_array(&m, BUFFERS, &[(4, 100 * MIB), (5, 16 * MIB)]);
    qs.push_chain(&[d]);
    start(&mut t, STATS, &[&qi, &qd, &qs]);
    let first = h.statistics(Duration::from_millis(100)).unwrap();
    assert_eq!(
        first.named(),
        vec![
            ("stat-free-memory", 100 * MIB),
            ("stat-total-memory", 16 * MIB)
        ]
    );
    assert!(
        eventually(|| qs.used_idx() == 1),
        "the buffer went back for a new report"
    );
    assert!(interrupted(&mut t, 1));
    // The guest answers with its buffer, which the device keeps until it wants more.
    qs.push_chain(&[stats_array(&m, BUFFERS, &[(4, 95 * MIB)])]);
    kick(&mut t, 2);
    assert!(eventually(|| reports(&h) == 2));
    assert_eq!(qs.used_idx(), 1);
    // Asked for statistics, the device returns the buffer and waits for the next report.
    let stats_handle = h.clone();
    let asker = std::thread::spawn(move || stats_handle.statistics(SECOND));
    assert!(eventually(|| qs.used_idx() == 2));
    let d = stats_array(&m, BUFFERS, &[(4, 90 * MIB), (0, 3), (77, 1)]);
    qs.push_chain(&[d]);
    kick(&mut t, 2);
    let fresh = asker.join().unwrap().unwrap();
    assert_eq!(
        fresh.named(),
        vec![("stat-swap-in", 3), ("stat-free-memory", 90 * MIB)]
    );
    // A guest that does not answer: the last report, after the timeout.
    let started = Instant::now();
    let stale = h.statistics(Duration::from_millis(200)).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(stale, fresh);
    // Two buffers at once: the older one goes back.
    qs.push_chain(&[stats_array(&m, BUFFERS, &[(4, 1)])]);
    qs.push_chain(&[stats_array(&m, BUFFERS + 0x100, &[(4, 2)])]);
    kick(&mut t, 2);
    assert!(eventually(|| reports(&h) == 5));
    assert_eq!(qs.used_idx(), 4);
    assert_eq!(
        h.statistics(Duration::ZERO).unwrap().named(),
        vec![("stat-free-memory", 2)]
    );
}

#[test]
fn free_page_reports_release_memory_without_ballooning_it() {
    let m = mem();
    let (mut t, h) = balloon(&m, false, true);
    // No statistics queue: the reporting queue moves up to index 2.
    let (qi, qd, mut qr) = (
        TestQueue::new(&m, ring(0)),
        TestQueue::new(&m, ring(1)),
        TestQueue::new(&m, ring(2)),
    );
    start(&mut t, REPORT, &[&qi, &qd, &qr]);
    fill(&m, 2 * MIB, 512);
    fill(&m, HIGH, 1);
    qr.push_chain(&[
        (2 * MIB, (2 * MIB) as u32, WRITE),
        (HIGH, 4096, WRITE),
        (LOW, 4096, WRITE),         // the hole: ignored
        (BUFFERS, 4096, 0),         // device-readable: ignored
        (6 * MIB + 1, 8192, WRITE), // unaligned: the whole page inside it
    ]);
    kick(&mut t, 2);
    assert!(interrupted(&mut t, 1));
    assert_eq!(qr.used_idx(), 1);
    assert_eq!(word(&m, 3 * MIB), 0);
    assert_eq!(word(&m, HIGH), 0);
    assert_eq!(h.pages_in_balloon(), 0, "reported pages stay the guest's");
    assert_eq!(h.actual_bytes(), 16 * MIB);
}

#[test]
fn hostile_requests_fail_alone() {
    let m = mem();
    let (mut t, h) = balloon(&m, true, true);
    let (mut qi, mut qd, qs, qr) = (
        TestQueue::new(&m, ring(0)),
        TestQueue::new(&m, ring(1)),
        TestQueue::new(&m, ring(2)),
        TestQueue::new(&m, ring(3)),
    );
    start(&mut t, STATS | OOM | REPORT, &[&qi, &qd, &qs, &qr]);
    fill(&m, 0, 1);
    fill(&m, 5 * MIB, 2);
    let bad = [
        frame(LOW),           // the hole
        frame(LOW + 4 * MIB), // the hole
        frame(24 * MIB),      // past the end
        u32::MAX,
        frame(5 * MIB),
        frame(5 * MIB), // repeated
    ];
    let heads = [
        qi.push_chain(&[frame_array(&m, BUFFERS, &bad)]),
        // A device-writable array, an array outside memory, a partial entry.
        qi.push_chain(&[(BUFFERS, 8, WRITE)]),
        qi.push_chain(&[(1 << 40, 64, 0)]),
        qi.push_chain(&[(BUFFERS + 16, 6, 0)]),
        // More frames than any driver sends (the buffer need not even exist).
        qi.push_chain(&[(BUFFERS, 4 * (request::MAX_FRAMES as u32 + 1), 0)]),
        // An empty chain entry.
        qi.push_chain(&[(BUFFERS, 0, 0)]),
    ];
    kick(&mut t, 0);
    assert!(eventually(|| qi.used_idx() == heads.len() as u16));
    let used: Vec<u32> = qi.used().iter().map(|e| e.0).collect();
    assert_eq!(used, heads.map(u32::from));
    assert_eq!(h.pages_in_balloon(), 1, "only 5 MiB went in");
    assert_eq!(word(&m, 0), 0x5a5a_0000, "page 0 untouched");
    assert_eq!(word(&m, 5 * MIB), 0);
    assert_eq!(word(&m, 5 * MIB + 4096), 0x5a5a_0001);
    // Deflating frames that are not in the balloon changes nothing.
    qd.push_chain(&[frame_array(
        &m,
        BUFFERS + 0x100,
        &[frame(6 * MIB), frame(LOW), frame(5 * MIB), frame(5 * MIB)],
    )]);
    kick(&mut t, 1);
    assert!(eventually(|| qd.used_idx() == 1));
    assert_eq!(h.pages_in_balloon(), 0);
    assert_eq!(r(&mut t, 0x70) & NEEDS_RESET, 0, "the device still works");

    // A driver index far ahead of the ring breaks the queue: needs reset, nothing served.
    qi.set_avail_idx(qi.used_idx().wrapping_add(QSIZE + 3));
    kick(&mut t, 0);
    assert!(eventually(|| r(&mut t, 0x70) & NEEDS_RESET != 0));
    qd.push_chain(&[frame_array(&m, BUFFERS, &[frame(5 * MIB)])]);
    kick(&mut t, 1);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(qd.used_idx(), 1, "nothing served until a reset");
    // A reset brings it back, with an empty balloon.
    w(&mut t, 0x70, 0);
    assert_eq!(r(&mut t, 0x70), 0);
    let (qi, qd) = (TestQueue::new(&m, ring(0)), TestQueue::new(&m, ring(1)));
    start(&mut t, 0, &[&qi, &qd]);
    assert_eq!(r(&mut t, 0x70) & NEEDS_RESET, 0);
}

#[test]
fn reset_empties_the_balloon_and_zeroes_actual() {
    let m = mem();
    let (mut t, h) = balloon(&m, false, false);
    let (tx, rx) = mpsc::channel();
    h.set_change_sink(Arc::new(move |bytes| {
        let _ = tx.send(bytes);
    }));
    let (mut qi, qd) = (TestQueue::new(&m, ring(0)), TestQueue::new(&m, ring(1)));
    start(&mut t, RING_EVENT_IDX_BIT, &[&qi, &qd]);
    h.set_target(8 * MIB);
    qi.push_chain(&[frame_array(&m, BUFFERS, &[frame(MIB), frame(MIB + 4096)])]);
    kick(&mut t, 0);
    assert!(eventually(|| h.pages_in_balloon() == 2));
    write_actual(&mut t, 2);
    assert_eq!(rx.recv_timeout(SECOND).unwrap(), 16 * MIB - 8192);
    w(&mut t, 0x70, 0);
    assert_eq!(h.pages_in_balloon(), 0);
    assert_eq!(
        config(&mut t),
        (2048, 0),
        "the target stays, actual is zero"
    );
    assert_eq!(h.actual_bytes(), 16 * MIB);
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(1500)).unwrap(),
        16 * MIB
    );
    // The driver can start again, and a target set meanwhile reaches it.
    let (qi, qd) = (TestQueue::new(&m, ring(0)), TestQueue::new(&m, ring(1)));
    start(&mut t, 0, &[&qi, &qd]);
    h.set_target(4 * MIB);
    assert!(interrupted(&mut t, 2));
}

const RING_EVENT_IDX_BIT: u64 = 1 << RING_EVENT_IDX;

#[test]
fn activation_needs_every_queue_the_features_call_for() {
    let m = mem();
    let (mut t, _) = balloon(&m, false, true);
    let (qi, qd) = (TestQueue::new(&m, ring(0)), TestQueue::new(&m, ring(1)));
    // STATS and REPORT accepted, but only two queues set up.
    w(&mut t, 0x70, 1);
    w(&mut t, 0x70, 3);
    let f = STATS | REPORT | (1 << 32);
    w(&mut t, 0x24, 0);
    w(&mut t, 0x20, f as u32);
    w(&mut t, 0x24, 1);
    w(&mut t, 0x20, (f >> 32) as u32);
    w(&mut t, 0x70, 0xb);
    for (i, q) in [&qi, &qd].iter().enumerate() {
        w(&mut t, 0x30, i as u32);
        w(&mut t, 0x38, u32::from(QSIZE));
        w(&mut t, 0x80, q.desc_table_addr().0 as u32);
        w(&mut t, 0x90, q.avail_addr().0 as u32);
        w(&mut t, 0xa0, q.used_addr().0 as u32);
        w(&mut t, 0x44, 1);
    }
    w(&mut t, 0x70, 0xf);
    assert!(!t.is_activated());
    assert_ne!(r(&mut t, 0x70) & NEEDS_RESET, 0);
}
