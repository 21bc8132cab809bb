//! The block device behind a real MMIO transport, driven the way a guest driver does.

use super::test_utils::*;
use super::*;
use crate::bus::BusDevice;
use crate::virtio::test_transport::{features, probe, r, transport, w};
use crate::virtio::MmioTransport;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EFD_NONBLOCK;

const STATUS: u64 = 0x70;
const INTERRUPT_STATUS: u64 = 0x60;
const INTERRUPT_ACK: u64 = 0x64;
const GENERATION: u64 = 0xfc;

fn capacity(t: &mut MmioTransport) -> u64 {
    let mut b = [0; 8];
    t.read(0x100, &mut b);
    u64::from_le_bytes(b)
}

/// Linux's virtio-mmio probe, accepting every offered feature.
fn start(t: &mut MmioTransport, vq: &TestQueue<'_>) {
    probe(t, features, QUEUE_SIZE, &[vq]);
}

/// Asks for an interrupt at the next used entry (EVENT_IDX), notifies queue 0 and waits for
/// the used-buffer interrupt.
fn kick(t: &mut MmioTransport, m: &GuestMemoryMmap, vq: &TestQueue<'_>) {
    m.write_obj(vq.used_idx(), vq.used_event_addr()).unwrap();
    w(t, 0x50, 0);
    assert!(
        wait(t.interrupt().irqfd(), SECOND).is_some(),
        "no interrupt"
    );
    assert_ne!(r(t, INTERRUPT_STATUS) & 1, 0);
    w(t, INTERRUPT_ACK, 1);
}

fn has_thread(name: &str) -> bool {
    thread_names().iter().any(|n| n == name)
}

#[test]
fn guest_reads_and_writes_through_the_transport() {
    let (f, data) = image(64);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let backend = BlockBackend::open(f.as_path(), false, true).unwrap();
    let block = Block::new(10, Some((backend, "boot")));
    let handle = block.handle();
    let mut t = transport(&m, block);

    assert_eq!(r(&mut t, 0x8), 2, "block device id");
    assert_eq!(capacity(&mut t), 64);
    let mut b = [0; 4];
    t.read(0x114, &mut b);
    assert_eq!(u32::from_le_bytes(b), 512, "blk_size");
    let offered = features(&mut t);
    assert_eq!(offered & (1 << 5), 0, "not read-only");
    assert_ne!(offered & (1 << 9), 0, "flush");

    start(&mut t, &vq);
    assert!(eventually(|| has_thread("blk10")));
    let p = put_request(&m, &vq, 0, 0, 4, Some((2048, true)));
    kick(&mut t, &m, &vq);
    assert_eq!(status_of(&m, &p), 0);
    assert_eq!(read_guest(&m, p.data, 2048), data[2048..4096]);

    m.write_slice(&[0xab; 512], GuestAddress(0x10_0000 + 3 * 0x2000 + 0x100))
        .unwrap();
    let p = put_request(&m, &vq, 3, 1, 63, Some((512, false)));
    let flush = put_request(&m, &vq, 6, 4, 0, None);
    kick(&mut t, &m, &vq);
    assert!(eventually(|| vq.used().len() == 3));
    assert_eq!((status_of(&m, &p), status_of(&m, &flush)), (0, 0));
    handle.flush().unwrap();
    assert_eq!(std::fs::read(f.as_path()).unwrap()[63 * 512..], [0xab; 512]);

    // Reset stops the worker; dropping the transport after that is clean.
    w(&mut t, STATUS, 0);
    assert!(!has_thread("blk10"));
    assert_eq!(r(&mut t, STATUS), 0);
}

#[test]
fn read_only_boot_disk_offers_ro() {
    let (f, _) = image(8);
    let m = mem();
    let backend = BlockBackend::open(f.as_path(), true, false).unwrap();
    let mut t = transport(&m, Block::new(11, Some((backend, ""))));
    let offered = features(&mut t);
    assert_ne!(offered & (1 << 5), 0, "RO");
    assert_eq!(offered & (1 << 13), 0, "no discard on a read-only disk");
}

#[test]
fn empty_slot_hot_plug_and_unplug() {
    let (f, data) = image(32);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let block = Block::new(12, None);
    let handle = block.handle();
    let mut t = transport(&m, block);
    assert_eq!(capacity(&mut t), 0);
    assert!(!handle.is_attached());
    start(&mut t, &vq);

    let p = put_request(&m, &vq, 0, 0, 0, Some((512, true)));
    kick(&mut t, &m, &vq);
    assert_eq!(status_of(&m, &p), 1, "empty slot: IOERR");

    // Hot-plug: new capacity, new generation, config-change interrupt.
    let gen0 = r(&mut t, GENERATION);
    let backend = BlockBackend::open(f.as_path(), false, false).unwrap();
    handle.attach(backend, "hotplugged").unwrap();
    assert!(handle.is_attached());
    assert_eq!(handle.path().as_deref(), Some(f.as_path()));
    assert_eq!(handle.capacity(), 32);
    assert!(wait(t.interrupt().irqfd(), SECOND).is_some());
    assert_eq!(r(&mut t, INTERRUPT_STATUS), 2);
    w(&mut t, INTERRUPT_ACK, 2);
    assert_ne!(r(&mut t, GENERATION), gen0);
    assert_eq!(capacity(&mut t), 32);

    let p = put_request(&m, &vq, 3, 0, 31, Some((512, true)));
    let id = put_request(&m, &vq, 6, 8, 0, Some((20, true)));
    kick(&mut t, &m, &vq);
    assert!(eventually(|| vq.used().len() == 3));
    assert_eq!(status_of(&m, &p), 0);
    assert_eq!(read_guest(&m, p.data, 512), data[31 * 512..]);
    assert_eq!(&read_guest(&m, id.data, 11), b"hotplugged\0");

    // A second disk does not fit (another image: the first one is locked for writing).
    let (f2, _) = image(1);
    let again = BlockBackend::open(f2.as_path(), true, false).unwrap();
    assert!(matches!(
        handle.attach(again, "x"),
        Err(BlockError::SlotBusy(12))
    ));

    // Unplug: capacity 0, generation bumps again, interrupt, then IOERR.
    let gen1 = r(&mut t, GENERATION);
    handle.detach().unwrap();
    assert!(wait(t.interrupt().irqfd(), SECOND).is_some());
    assert_eq!(r(&mut t, INTERRUPT_STATUS) & 2, 2);
    w(&mut t, INTERRUPT_ACK, 2);
    assert_ne!(r(&mut t, GENERATION), gen1);
    assert_eq!(capacity(&mut t), 0);
    assert!(!handle.is_attached());
    let p = put_request(&m, &vq, 9, 0, 0, Some((512, true)));
    kick(&mut t, &m, &vq);
    assert_eq!(status_of(&m, &p), 1);
    assert!(matches!(handle.detach(), Err(BlockError::SlotEmpty(12))));
    handle.flush().unwrap();
}

#[test]
fn attach_before_the_driver_starts_raises_no_interrupt() {
    let (f, _) = image(16);
    let m = mem();
    let block = Block::new(13, None);
    let handle = block.handle();
    let mut t = transport(&m, block);
    let gen0 = r(&mut t, GENERATION);
    handle
        .attach(BlockBackend::open(f.as_path(), false, false).unwrap(), "")
        .unwrap();
    assert_ne!(r(&mut t, GENERATION), gen0);
    assert_eq!(capacity(&mut t), 16);
    assert_eq!(r(&mut t, INTERRUPT_STATUS), 0);
    assert!(wait(t.interrupt().irqfd(), std::time::Duration::from_millis(20)).is_none());
}

#[test]
fn hot_plugged_read_only_disk_fails_writes_until_renegotiated() {
    let (f, data) = image(16);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let block = Block::new(14, None);
    let handle = block.handle();
    let mut t = transport(&m, block);
    start(&mut t, &vq);
    assert_eq!(t.acked_features() & (1 << 5), 0);
    handle
        .attach(BlockBackend::open(f.as_path(), true, false).unwrap(), "")
        .unwrap();
    assert!(wait(t.interrupt().irqfd(), SECOND).is_some());
    w(&mut t, INTERRUPT_ACK, 2);
    let p = put_request(&m, &vq, 0, 1, 0, Some((512, false)));
    kick(&mut t, &m, &vq);
    assert_eq!(status_of(&m, &p), 1, "write to a read-only disk");
    assert_eq!(std::fs::read(f.as_path()).unwrap(), data);
    // After a guest reset the driver is told the disk is read-only.
    w(&mut t, STATUS, 0);
    assert_ne!(features(&mut t) & (1 << 5), 0);
}

#[test]
fn dropping_the_transport_stops_the_worker() {
    let (f, _) = image(8);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let backend = BlockBackend::open(f.as_path(), false, false).unwrap();
    let mut t = transport(&m, Block::new(15, Some((backend, ""))));
    start(&mut t, &vq);
    assert!(eventually(|| has_thread("blk15")));
    drop(t);
    assert!(!has_thread("blk15"));
}

#[test]
fn wrong_queue_count_is_refused() {
    let m = mem();
    let mut block = Block::new(16, None);
    let irq = Arc::new(Interrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let e = block.activate(m, irq, vec![], vec![]).unwrap_err();
    assert!(matches!(
        e,
        ActivateError::QueueCount {
            expected: 1,
            got: 0
        }
    ));
}

#[test]
fn hot_plug_races_with_guest_io() {
    let (f, _) = image(64);
    let m = mem();
    let vq = TestQueue::new(&m, QUEUE_BASE);
    let block = Block::new(17, None);
    let handle = block.handle();
    let mut t = transport(&m, block);
    start(&mut t, &vq);
    let path = f.as_path().to_path_buf();
    let plugger = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            for _ in 0..50 {
                let b = BlockBackend::open(&path, false, false).unwrap();
                handle.attach(b, "race").unwrap();
                handle.detach().unwrap();
            }
        })
    };
    // 8 rounds of 5 requests each; every one completes with OK or IOERR.
    for round in 0..8u16 {
        let mut placed = Vec::new();
        for i in 0..5u16 {
            let head = (i * 3) % QSIZE;
            placed.push(put_request(
                &m,
                &vq,
                head,
                0,
                u64::from(round),
                Some((512, true)),
            ));
        }
        w(&mut t, 0x50, 0);
        let want = usize::from(round + 1) * 5;
        assert!(eventually(|| usize::from(vq.used_idx()) == want));
        for p in &placed {
            assert!(
                status_of(&m, p) <= 1,
                "round {round}: status {} used {:?}",
                status_of(&m, p),
                vq.used()
            );
        }
    }
    plugger.join().unwrap();
    assert!(!handle.is_attached());
    assert!(!t.interrupt().needs_reset());
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<BlockHandle>();
    send_sync::<Interrupt>();
    send_sync::<BlockBackend>();
}
