use super::super::backend::BlockBackend;
use super::super::slot::Disk;
use super::super::test_utils::*;
use super::*;
use vm_memory::GuestAddress;

struct Rig {
    handle: WorkerHandle,
    kick: EventFd,
    interrupt: Arc<Interrupt>,
}

fn start(m: &GuestMemoryMmap, queue: Queue, slot: Slot, name: &str) -> Rig {
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    let interrupt = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let worker = Worker {
        mem: m.clone(),
        queue,
        queue_evt: kick.try_clone().unwrap(),
        interrupt: interrupt.clone(),
        slot: Arc::new(slot),
    };
    Rig {
        handle: WorkerHandle::spawn(name.into(), worker).unwrap(),
        kick,
        interrupt,
    }
}

fn disk_slot(index: usize, f: &vmm_sys_util::tempfile::TempFile, read_only: bool) -> Slot {
    let backend = BlockBackend::open(f.as_path(), read_only, false).unwrap();
    Slot::new(index, Some(Disk::new(backend, "worker-serial")))
}

#[test]
fn serves_requests_and_interrupts() {
    let (f, data) = image(64);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let rig = start(&m, vq.create_queue(), disk_slot(0, &f, false), "blk-t0");

    let read = put_request(&m, &vq, 0, 0, 2, Some((1024, true)));
    m.write_slice(&[0x77; 512], GuestAddress(0x10_0000 + 3 * 0x2000 + 0x100))
        .unwrap();
    let write = put_request(&m, &vq, 3, 1, 10, Some((512, false)));
    let flush = put_request(&m, &vq, 6, 4, 0, None);
    let id = put_request(&m, &vq, 8, 8, 0, Some((20, true)));
    rig.kick.write(1).unwrap();

    assert!(wait(rig.interrupt.irqfd(), SECOND).is_some(), "interrupt");
    assert_eq!(rig.interrupt.status() & 1, 1);
    // The first interrupt may come before the last request completes: wait for all four.
    let deadline = std::time::Instant::now() + SECOND;
    while vq.used().len() < 4 && std::time::Instant::now() < deadline {
        let _ = wait(rig.interrupt.irqfd(), std::time::Duration::from_millis(10));
    }
    assert_eq!(vq.used(), vec![(0, 1025), (3, 1), (6, 1), (8, 21)]);
    for p in [&read, &write, &flush, &id] {
        assert_eq!(status_of(&m, p), 0);
    }
    assert_eq!(read_guest(&m, read.data, 1024), data[1024..2048]);
    assert_eq!(&read_guest(&m, id.data, 13), b"worker-serial");
    let file = std::fs::read(f.as_path()).unwrap();
    assert_eq!(file[10 * 512..11 * 512], [0x77; 512]);
    drop(rig.handle);
}

#[test]
fn requests_queued_before_start_are_served() {
    let (f, _) = image(8);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let p = put_request(&m, &vq, 0, 0, 0, Some((512, true)));
    let rig = start(&m, vq.create_queue(), disk_slot(1, &f, false), "blk-t1");
    assert!(wait(rig.interrupt.irqfd(), SECOND).is_some());
    assert_eq!(status_of(&m, &p), 0);
}

#[test]
fn bad_chains_fail_alone() {
    let (f, _) = image(8);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    // Header at a writable descriptor: IOERR in the status byte. (Every chain is complete
    // before the worker starts, so it never sees one half made.)
    let bad_header = put_request(&m, &vq, 0, 0, 0, Some((512, true)));
    vq.set_desc(0, Descriptor::new(0x10_0000, 16, 1 | 2, 1));
    // No status byte (last descriptor read-only): returned with length 0.
    put_request(&m, &vq, 3, 4, 0, None);
    vq.set_desc(4, Descriptor::new(0x10_6020, 1, 0, 0));
    // Past the end of the disk, a write to a read-only disk, an unknown type.
    let past = put_request(&m, &vq, 5, 0, 8, Some((512, true)));
    let ro = put_request(&m, &vq, 8, 1, 0, Some((512, false)));
    let unknown = put_request(&m, &vq, 11, 77, 0, None);
    // And a good one after them.
    let good = put_request(&m, &vq, 13, 0, 7, Some((512, true)));
    let rig = start(&m, vq.create_queue(), disk_slot(2, &f, true), "blk-t2");
    rig.kick.write(1).unwrap();
    assert!(eventually(|| vq.used().len() == 6));
    assert_eq!(
        vq.used(),
        vec![(0, 1), (3, 0), (5, 1), (8, 1), (11, 1), (13, 513)]
    );
    assert_eq!(status_of(&m, &bad_header), 1);
    assert_eq!(status_of(&m, &past), 1);
    assert_eq!(status_of(&m, &ro), 1);
    assert_eq!(status_of(&m, &unknown), 2);
    assert_eq!(status_of(&m, &good), 0);
    assert!(!rig.interrupt.needs_reset());
}

use virtio_queue::desc::split::Descriptor;

#[test]
fn avail_index_jump_breaks_the_device() {
    let (f, _) = image(8);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let rig = start(&m, vq.create_queue(), disk_slot(3, &f, false), "blk-t3");
    put_request(&m, &vq, 0, 0, 0, Some((512, true)));
    vq.set_avail_idx(QSIZE + 5);
    rig.kick.write(1).unwrap();
    assert!(eventually(|| rig.interrupt.needs_reset()));
    assert_eq!(rig.interrupt.status(), 2, "config-change interrupt");
    assert!(vq.used().is_empty());
    // Later kicks are ignored, even once the ring looks sane again.
    vq.set_avail_idx(1);
    rig.kick.write(1).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(vq.used().is_empty());
}

#[test]
fn out_of_range_head_breaks_the_device() {
    let (f, _) = image(8);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let rig = start(&m, vq.create_queue(), disk_slot(4, &f, false), "blk-t4");
    vq.set_avail_entry(0, 200);
    vq.set_avail_idx(1);
    rig.kick.write(1).unwrap();
    assert!(eventually(|| rig.interrupt.needs_reset()));
    assert!(vq.used().is_empty());
}

#[test]
fn rings_outside_memory_break_the_device() {
    let (f, _) = image(8);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let mut q = vq.create_queue();
    // The queue was valid when handed over; later the used ring points outside memory (only a
    // broken transport could do this, but the worker must still cope).
    q.set_used_ring_address(Some(0xfff0_0000), Some(0));
    put_request(&m, &vq, 0, 0, 0, Some((512, true)));
    let rig = start(&m, q, disk_slot(5, &f, false), "blk-t5");
    rig.kick.write(1).unwrap();
    assert!(eventually(|| rig.interrupt.needs_reset()));
}

#[test]
fn looping_chain_gets_no_status_and_the_queue_goes_on() {
    let (f, _) = image(8);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    // The chains are complete before the worker starts: it could otherwise take the first one
    // before it is made to loop.
    let looped = put_request(&m, &vq, 0, 0, 0, Some((512, true)));
    vq.set_desc(2, Descriptor::new(looped.status.0, 1, 1 | 2, 0));
    let good = put_request(&m, &vq, 3, 0, 1, Some((512, true)));
    let rig = start(&m, vq.create_queue(), disk_slot(6, &f, false), "blk-t6");
    rig.kick.write(1).unwrap();
    assert!(eventually(|| vq.used().len() == 2));
    assert_eq!(vq.used(), vec![(0, 0), (3, 513)]);
    assert_eq!(status_of(&m, &looped), 0xff, "untouched");
    assert_eq!(status_of(&m, &good), 0);
}

#[test]
fn event_idx_suppresses_interrupts_until_asked() {
    let (f, _) = image(8);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let mut q = vq.create_queue();
    q.set_event_idx(true);
    let used_event = vq.used_event_addr();
    // The driver wants an interrupt once used idx passes 1 (after the second request).
    m.write_obj(1u16, used_event).unwrap();
    let rig = start(&m, q, disk_slot(7, &f, false), "blk-t7");
    put_request(&m, &vq, 0, 4, 0, None);
    rig.kick.write(1).unwrap();
    assert!(eventually(|| vq.used().len() == 1));
    assert_eq!(
        wait(rig.interrupt.irqfd(), std::time::Duration::from_millis(100)),
        None
    );
    // The device asked to be kicked for the next entry (avail_event = next_avail = 1).
    let avail_event = vq.avail_event_addr();
    assert!(eventually(|| m.read_obj::<u16>(avail_event).unwrap() == 1));
    put_request(&m, &vq, 2, 4, 0, None);
    rig.kick.write(1).unwrap();
    assert!(wait(rig.interrupt.irqfd(), SECOND).is_some());
    assert_eq!(vq.used().len(), 2);
}

#[test]
fn stop_joins_the_named_thread() {
    let (f, _) = image(8);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let mut rig = start(&m, vq.create_queue(), disk_slot(8, &f, false), "blk-t8");
    assert!(eventually(|| thread_names().iter().any(|n| n == "blk-t8")));
    rig.handle.stop();
    assert!(!thread_names().iter().any(|n| n == "blk-t8"));
    // Stopping twice (and dropping) is fine.
    rig.handle.stop();
}

#[test]
fn a_parked_worker_takes_nothing_until_released() {
    let (f, _) = image(8);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let rig = start(&m, vq.create_queue(), disk_slot(2, &f, false), "blk-t-park");
    let first = put_request(&m, &vq, 0, 0, 0, Some((512, true)));
    rig.kick.write(1).unwrap();
    assert!(wait(rig.interrupt.irqfd(), SECOND).is_some());
    assert_eq!(status_of(&m, &first), 0);
    let at = rig.handle.park().unwrap();
    assert_eq!(
        (at.next_avail, at.next_used),
        (1, 1),
        "one request taken, one used"
    );
    // While parked, a new request stays in the ring.
    let second = put_request(&m, &vq, 3, 0, 1, Some((512, true)));
    rig.kick.write(1).unwrap();
    assert!(wait(rig.interrupt.irqfd(), std::time::Duration::from_millis(200)).is_none());
    assert_eq!(vq.used().len(), 1);
    assert_eq!(rig.handle.park().unwrap(), at, "still where it stopped");
    rig.handle.release();
    assert!(
        wait(rig.interrupt.irqfd(), SECOND).is_some(),
        "served once released"
    );
    assert_eq!(status_of(&m, &second), 0);
    assert_eq!(vq.used().len(), 2);
}
