use super::*;
use std::sync::Mutex;
use virtio_queue::QueueT;

const EVENT_IDX: u64 = 1 << 29;
const VERSION_1: u64 = 1 << 32;

#[derive(Default)]
struct Seen {
    activations: Vec<(Vec<Queue>, Vec<EventFd>)>,
    acked: Option<u64>,
    resets: usize,
    config_writes: Vec<(u64, Vec<u8>)>,
}

struct Dummy {
    sizes: Vec<u16>,
    features: u64,
    fail: bool,
    /// The last queue exists only with this feature (as the balloon's optional queues).
    last_queue_needs: Option<u64>,
    seen: Arc<Mutex<Seen>>,
}

impl VirtioDevice for Dummy {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &self.sizes
    }
    fn avail_features(&self) -> u64 {
        self.features
    }
    fn queues_in_use(&self, acked: u64) -> usize {
        match self.last_queue_needs {
            Some(f) if acked & f == 0 => self.sizes.len() - 1,
            _ => self.sizes.len(),
        }
    }
    fn ack_features(&mut self, features: u64) {
        self.seen.lock().unwrap().acked = Some(features);
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset.wrapping_add(i as u64) as u8;
        }
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        self.seen
            .lock()
            .unwrap()
            .config_writes
            .push((offset, data.to_vec()));
    }
    fn config_generation(&self) -> u32 {
        7
    }
    fn activate(
        &mut self,
        _mem: GuestMemoryMmap,
        _interrupt: Arc<Interrupt>,
        queues: Vec<Queue>,
        queue_evts: Vec<EventFd>,
    ) -> Result<(), ActivateError> {
        if self.fail {
            return Err(ActivateError::Other("refused".into()));
        }
        self.seen
            .lock()
            .unwrap()
            .activations
            .push((queues, queue_evts));
        Ok(())
    }
    fn reset(&mut self) {
        self.seen.lock().unwrap().resets += 1;
    }
    fn can_save(&self) -> Result<(), String> {
        Ok(())
    }
    fn save(&mut self) -> Result<crate::virtio::DeviceSnapshot, String> {
        let seen = self.seen.lock().unwrap();
        let queues = seen
            .activations
            .last()
            .map(|(q, _)| q.iter().map(QueuePosition::of).collect())
            .unwrap_or_default();
        Ok(crate::virtio::DeviceSnapshot {
            device: crate::virtio::DeviceState::Block(crate::virtio::block::BlockState {
                disk: None,
                config_generation: 7,
            }),
            queues,
        })
    }
}

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
}

fn transport_with(sizes: &[u16], features: u64, fail: bool) -> (MmioTransport, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let dev = Dummy {
        sizes: sizes.to_vec(),
        features,
        fail,
        last_queue_needs: None,
        seen: seen.clone(),
    };
    let t = MmioTransport::new(mem(), Box::new(dev), EventFd::new(EFD_NONBLOCK).unwrap()).unwrap();
    (t, seen)
}

fn transport() -> (MmioTransport, Arc<Mutex<Seen>>) {
    transport_with(&[256, 16], EVENT_IDX | (1 << 5), false)
}

fn r(t: &mut MmioTransport, offset: u64) -> u32 {
    let mut b = [0xaa; 4];
    t.read(offset, &mut b);
    u32::from_le_bytes(b)
}

fn w(t: &mut MmioTransport, offset: u64, value: u32) {
    t.write(offset, &value.to_le_bytes());
}

fn features_ok(t: &mut MmioTransport, driver_features: u64) {
    w(t, regs::STATUS, status::ACKNOWLEDGE);
    w(t, regs::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    w(t, regs::DRIVER_FEATURES_SEL, 0);
    w(t, regs::DRIVER_FEATURES, driver_features as u32);
    w(t, regs::DRIVER_FEATURES_SEL, 1);
    w(t, regs::DRIVER_FEATURES, (driver_features >> 32) as u32);
    w(t, regs::STATUS, 0xb);
}

fn setup_queue(t: &mut MmioTransport, index: u32, size: u32, base: u64) {
    w(t, regs::QUEUE_SEL, index);
    assert_eq!(r(t, regs::QUEUE_READY), 0);
    w(t, regs::QUEUE_NUM, size);
    w(t, regs::QUEUE_DESC_LOW, base as u32);
    w(t, regs::QUEUE_DESC_HIGH, (base >> 32) as u32);
    w(t, regs::QUEUE_DRIVER_LOW, (base + 0x1000) as u32);
    w(t, regs::QUEUE_DRIVER_HIGH, 0);
    w(t, regs::QUEUE_DEVICE_LOW, (base + 0x2000) as u32);
    w(t, regs::QUEUE_DEVICE_HIGH, 0);
    w(t, regs::QUEUE_READY, 1);
    assert_eq!(r(t, regs::QUEUE_READY), 1);
}

fn start(t: &mut MmioTransport, driver_features: u64) {
    features_ok(t, driver_features);
    setup_queue(t, 0, 256, 0x10000);
    setup_queue(t, 1, 16, 0x20000);
    w(t, regs::STATUS, 0xf);
}

#[test]
fn identification_registers() {
    let (mut t, _) = transport();
    assert_eq!(r(&mut t, 0x000), 0x7472_6976);
    assert_eq!(r(&mut t, 0x004), 2);
    assert_eq!(r(&mut t, 0x008), 2);
    assert_eq!(r(&mut t, 0x00c), VENDOR_ID);
    assert_eq!(r(&mut t, regs::CONFIG_GENERATION), 7);
    assert_eq!(r(&mut t, regs::STATUS), 0);
    assert_eq!(r(&mut t, regs::INTERRUPT_STATUS), 0);
    // No shared memory regions.
    assert_eq!(r(&mut t, regs::SHM_LEN_LOW), u32::MAX);
    assert_eq!(r(&mut t, regs::SHM_LEN_HIGH), u32::MAX);
}

#[test]
fn device_features_by_select() {
    let (mut t, _) = transport();
    w(&mut t, regs::DEVICE_FEATURES_SEL, 0);
    assert_eq!(
        r(&mut t, regs::DEVICE_FEATURES),
        (EVENT_IDX | (1 << 5)) as u32
    );
    w(&mut t, regs::DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        r(&mut t, regs::DEVICE_FEATURES),
        1,
        "VERSION_1 always offered"
    );
    w(&mut t, regs::DEVICE_FEATURES_SEL, 2);
    assert_eq!(r(&mut t, regs::DEVICE_FEATURES), 0);
    w(&mut t, regs::DEVICE_FEATURES_SEL, u32::MAX);
    assert_eq!(r(&mut t, regs::DEVICE_FEATURES), 0);
}

#[test]
fn transport_masks_features_it_cannot_honour() {
    let packed = 1u64 << 34;
    let (mut t, _) = transport_with(&[8], packed | (1 << 38) | 1, false);
    w(&mut t, regs::DEVICE_FEATURES_SEL, 1);
    assert_eq!(r(&mut t, regs::DEVICE_FEATURES), 1);
    w(&mut t, regs::DEVICE_FEATURES_SEL, 0);
    assert_eq!(r(&mut t, regs::DEVICE_FEATURES), 1);
}

#[test]
fn driver_features_are_masked_to_the_offer() {
    let (mut t, seen) = transport();
    features_ok(&mut t, u64::MAX);
    assert_eq!(t.acked_features(), VERSION_1 | EVENT_IDX | (1 << 5));
    assert_eq!(seen.lock().unwrap().acked, Some(t.acked_features()));
    assert_eq!(r(&mut t, regs::STATUS), 0xb);
}

#[test]
fn feature_writes_outside_the_negotiation_window_are_ignored() {
    let (mut t, _) = transport();
    // Before DRIVER.
    w(&mut t, regs::DRIVER_FEATURES_SEL, 1);
    w(&mut t, regs::DRIVER_FEATURES, 1);
    assert_eq!(t.acked_features(), 0);
    features_ok(&mut t, VERSION_1);
    // After FEATURES_OK.
    w(&mut t, regs::DRIVER_FEATURES_SEL, 0);
    w(&mut t, regs::DRIVER_FEATURES, 1 << 5);
    assert_eq!(t.acked_features(), VERSION_1);
    // A select other than 0 or 1 writes nothing.
    let (mut t, _) = transport();
    w(&mut t, regs::STATUS, 1);
    w(&mut t, regs::STATUS, 3);
    w(&mut t, regs::DRIVER_FEATURES_SEL, 5);
    w(&mut t, regs::DRIVER_FEATURES, u32::MAX);
    assert_eq!(t.acked_features(), 0);
}

#[test]
fn features_ok_refused_without_version_1() {
    let (mut t, seen) = transport();
    features_ok(&mut t, EVENT_IDX);
    assert_eq!(r(&mut t, regs::STATUS) & status::FEATURES_OK, 0);
    assert_eq!(r(&mut t, regs::STATUS), 3);
    assert_eq!(seen.lock().unwrap().acked, None);
    // Without FEATURES_OK the queues cannot be set up and DRIVER_OK is refused.
    w(&mut t, regs::QUEUE_SEL, 0);
    w(&mut t, regs::QUEUE_READY, 1);
    assert_eq!(r(&mut t, regs::QUEUE_READY), 0);
    w(&mut t, regs::STATUS, 7);
    assert_eq!(r(&mut t, regs::STATUS), 3);
    assert!(!t.is_activated());
}

#[test]
fn status_steps_must_follow_the_init_sequence() {
    let (mut t, _) = transport();
    w(&mut t, regs::STATUS, status::DRIVER);
    assert_eq!(r(&mut t, regs::STATUS), 0, "DRIVER before ACKNOWLEDGE");
    w(&mut t, regs::STATUS, 1);
    w(&mut t, regs::STATUS, 1 | status::FEATURES_OK);
    assert_eq!(r(&mut t, regs::STATUS), 1, "FEATURES_OK before DRIVER");
    w(&mut t, regs::STATUS, 1 | status::DRIVER_OK);
    assert_eq!(r(&mut t, regs::STATUS), 1, "DRIVER_OK before FEATURES_OK");
    w(&mut t, regs::STATUS, 3);
    w(&mut t, regs::STATUS, 1);
    assert_eq!(r(&mut t, regs::STATUS), 3, "clearing a bit without reset");
    w(&mut t, regs::STATUS, 3 | 0x30);
    assert_eq!(r(&mut t, regs::STATUS), 3, "unknown bits are dropped");
    w(&mut t, regs::STATUS, 3 | status::FAILED);
    assert_eq!(r(&mut t, regs::STATUS), 0x83);
}

#[test]
fn queue_setup_and_activation() {
    let (mut t, seen) = transport();
    w(&mut t, regs::QUEUE_SEL, 0);
    assert_eq!(r(&mut t, regs::QUEUE_NUM_MAX), 256);
    w(&mut t, regs::QUEUE_SEL, 1);
    assert_eq!(r(&mut t, regs::QUEUE_NUM_MAX), 16);
    w(&mut t, regs::QUEUE_SEL, 2);
    assert_eq!(r(&mut t, regs::QUEUE_NUM_MAX), 0, "no queue 2");
    assert_eq!(r(&mut t, regs::QUEUE_READY), 0);
    // Queue registers are write-only (read 0) and locked before FEATURES_OK.
    w(&mut t, regs::QUEUE_SEL, 0);
    w(&mut t, regs::QUEUE_READY, 1);
    assert_eq!(r(&mut t, regs::QUEUE_READY), 0);

    start(&mut t, VERSION_1 | EVENT_IDX);
    assert!(t.is_activated());
    assert_eq!(r(&mut t, regs::STATUS), 0xf);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.activations.len(), 1);
    let (queues, evts) = &seen.activations[0];
    assert_eq!(queues.len(), 2);
    assert_eq!(evts.len(), 2);
    assert_eq!(queues[0].size(), 256);
    assert_eq!(queues[0].desc_table(), 0x10000);
    assert_eq!(queues[0].avail_ring(), 0x11000);
    assert_eq!(queues[0].used_ring(), 0x12000);
    assert!(queues[0].event_idx_enabled());
    assert_eq!(queues[1].size(), 16);
    assert_eq!(queues[1].desc_table(), 0x20000);
    assert!(queues[1].ready());
}

#[test]
fn queue_registers_locked_after_driver_ok() {
    let (mut t, seen) = transport();
    start(&mut t, VERSION_1);
    w(&mut t, regs::QUEUE_SEL, 0);
    w(&mut t, regs::QUEUE_READY, 0);
    assert_eq!(r(&mut t, regs::QUEUE_READY), 1);
    // DRIVER_OK again does not activate twice.
    w(&mut t, regs::STATUS, 0xf);
    assert_eq!(seen.lock().unwrap().activations.len(), 1);
}

#[test]
fn high_address_halves_combine() {
    let big = GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), 0x10000),
        (GuestAddress(0x1_0000_0000), 0x10000),
    ])
    .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let dev = Dummy {
        sizes: vec![8],
        features: 0,
        fail: false,
        last_queue_needs: None,
        seen: seen.clone(),
    };
    let mut t =
        MmioTransport::new(big, Box::new(dev), EventFd::new(EFD_NONBLOCK).unwrap()).unwrap();
    features_ok(&mut t, VERSION_1);
    setup_queue(&mut t, 0, 8, 0x1_0000_0000);
    w(&mut t, regs::STATUS, 0xf);
    assert!(t.is_activated());
    let s = seen.lock().unwrap();
    assert_eq!(s.activations[0].0[0].desc_table(), 0x1_0000_0000);
}

#[test]
fn invalid_queues_refuse_activation() {
    type Setup = fn(&mut MmioTransport);
    let cases: [(&str, Setup); 6] = [
        ("driver area at 0", |t| {
            setup_queue(t, 0, 256, 0x10000);
            setup_queue(t, 1, 16, 0x20000);
            w(t, regs::QUEUE_DRIVER_LOW, 0);
        }),
        ("not ready", |t| {
            setup_queue(t, 0, 256, 0x10000);
        }),
        ("size not a power of two", |t| {
            setup_queue(t, 0, 256, 0x10000);
            setup_queue(t, 1, 12, 0x20000);
        }),
        ("size above max", |t| {
            setup_queue(t, 0, 512, 0x10000);
            setup_queue(t, 1, 16, 0x20000);
        }),
        ("rings outside memory", |t| {
            setup_queue(t, 0, 256, 0x10000);
            setup_queue(t, 1, 16, 0xff000);
        }),
        ("misaligned descriptor table", |t| {
            setup_queue(t, 0, 256, 0x10008);
            setup_queue(t, 1, 16, 0x20000);
        }),
    ];
    for (name, setup) in cases {
        let (mut t, seen) = transport();
        features_ok(&mut t, VERSION_1);
        setup(&mut t);
        w(&mut t, regs::STATUS, 0xf);
        assert!(!t.is_activated(), "{name}");
        assert!(seen.lock().unwrap().activations.is_empty(), "{name}");
        assert_eq!(
            r(&mut t, regs::STATUS),
            0xf | status::DEVICE_NEEDS_RESET,
            "{name}"
        );
        assert_eq!(t.interrupt().status(), 2, "{name}: config interrupt");
        // A reset recovers.
        w(&mut t, regs::STATUS, 0);
        assert_eq!(r(&mut t, regs::STATUS), 0, "{name}");
        start(&mut t, VERSION_1);
        assert!(t.is_activated(), "{name}");
    }
}

#[test]
fn device_activation_failure_sets_needs_reset() {
    let (mut t, _) = transport_with(&[256, 16], 0, true);
    start(&mut t, VERSION_1);
    assert!(!t.is_activated());
    assert_eq!(r(&mut t, regs::STATUS) & status::DEVICE_NEEDS_RESET, 0x40);
}

#[test]
fn reset_returns_to_initial_state() {
    let (mut t, seen) = transport();
    start(&mut t, VERSION_1 | EVENT_IDX);
    t.interrupt().trigger(InterruptKind::UsedBuffer).unwrap();
    w(&mut t, regs::DEVICE_FEATURES_SEL, 1);
    w(&mut t, regs::QUEUE_SEL, 1);
    w(&mut t, regs::QUEUE_NOTIFY, 0);
    w(&mut t, regs::STATUS, 0);
    assert!(!t.is_activated());
    assert_eq!(seen.lock().unwrap().resets, 1);
    assert_eq!(r(&mut t, regs::STATUS), 0);
    assert_eq!(r(&mut t, regs::INTERRUPT_STATUS), 0);
    assert_eq!(t.acked_features(), 0);
    assert_eq!(r(&mut t, regs::QUEUE_READY), 0, "queue 0 selected again");
    assert_eq!(r(&mut t, regs::QUEUE_NUM_MAX), 256);
    assert_eq!(
        r(&mut t, regs::DEVICE_FEATURES),
        (EVENT_IDX | (1 << 5)) as u32
    );
    assert!(t.queue_evts()[0].read().is_err(), "stale notify dropped");
    // The whole sequence works again.
    start(&mut t, VERSION_1);
    assert!(t.is_activated());
    assert_eq!(seen.lock().unwrap().activations.len(), 2);
}

#[test]
fn notify_signals_the_queue_eventfd() {
    let (mut t, seen) = transport();
    start(&mut t, VERSION_1);
    w(&mut t, regs::QUEUE_NOTIFY, 1);
    w(&mut t, regs::QUEUE_NOTIFY, 1);
    w(&mut t, regs::QUEUE_NOTIFY, 9);
    assert_eq!(t.queue_evts()[1].read().unwrap(), 2);
    assert!(t.queue_evts()[0].read().is_err());
    // The device's copies are the same eventfds.
    w(&mut t, regs::QUEUE_NOTIFY, 0);
    assert_eq!(seen.lock().unwrap().activations[0].1[0].read().unwrap(), 1);
}

#[test]
fn interrupt_status_and_ack() {
    let (mut t, _) = transport();
    start(&mut t, VERSION_1);
    t.interrupt().trigger(InterruptKind::UsedBuffer).unwrap();
    t.interrupt().trigger(InterruptKind::ConfigChange).unwrap();
    assert_eq!(r(&mut t, regs::INTERRUPT_STATUS), 3);
    assert_eq!(t.interrupt().irqfd().read().unwrap(), 2);
    w(&mut t, regs::INTERRUPT_ACK, 1);
    assert_eq!(r(&mut t, regs::INTERRUPT_STATUS), 2);
    w(&mut t, regs::INTERRUPT_ACK, 2);
    assert_eq!(r(&mut t, regs::INTERRUPT_STATUS), 0);
    t.notify_config_change();
    assert_eq!(r(&mut t, regs::INTERRUPT_STATUS), 2);
}

#[test]
fn config_change_notification_only_once_started() {
    let (t, _) = transport();
    t.notify_config_change();
    assert_eq!(t.interrupt().status(), 0);
}

#[test]
fn config_space_goes_to_the_device() {
    let (mut t, seen) = transport();
    let mut b = [0u8; 8];
    t.read(0x100, &mut b);
    assert_eq!(b, [0, 1, 2, 3, 4, 5, 6, 7]);
    let mut b = [0u8; 1];
    t.read(0x105, &mut b);
    assert_eq!(b, [5]);
    let mut b = [0u8; 2];
    t.read(0xfff, &mut b);
    assert_eq!(b, [0xff, 0]);
    t.write(0x104, &[1, 2]);
    assert_eq!(seen.lock().unwrap().config_writes, vec![(4, vec![1, 2])]);
}

#[test]
fn odd_sizes_and_unknown_offsets() {
    let (mut t, _) = transport();
    // A 2-byte read of the magic value reads zeros.
    let mut b = [0xaau8; 2];
    t.read(0, &mut b);
    assert_eq!(b, [0, 0]);
    let mut b = [0xaau8; 8];
    t.read(0, &mut b);
    assert_eq!(b, [0; 8]);
    // Unaligned 4-byte read.
    let mut b = [0xaau8; 4];
    t.read(1, &mut b);
    assert_eq!(b, [0; 4]);
    // Unknown and write-only registers read 0.
    for off in [0x018, 0x028, 0x038, 0x050, 0x064, 0x080, 0x0c0, 0x0f8] {
        assert_eq!(r(&mut t, off), 0, "offset 0x{off:x}");
    }
    // 1- and 2-byte status writes are ignored.
    t.write(regs::STATUS, &[1]);
    t.write(regs::STATUS, &[1, 0]);
    assert_eq!(r(&mut t, regs::STATUS), 0);
    // Writes to read-only registers change nothing.
    w(&mut t, 0x000, 5);
    w(&mut t, regs::QUEUE_NUM_MAX, 5);
    assert_eq!(r(&mut t, 0), 0x7472_6976);
    assert_eq!(r(&mut t, regs::QUEUE_NUM_MAX), 256);
}

#[test]
fn no_access_panics() {
    let (mut t, _) = transport();
    let offsets = (0..0x110u64).chain([0xffc, 0xfff, 0x1000, 0x1001, u64::MAX - 3, u64::MAX]);
    for off in offsets {
        for len in [0usize, 1, 2, 3, 4, 5, 8, 16] {
            let mut b = vec![0u8; len];
            t.read(off, &mut b);
            t.write(off, &vec![0xff; len]);
            t.write(off, &vec![0x01; len]);
        }
    }
    // Random registers bashed in any order, then a reset, leave a usable transport.
    w(&mut t, regs::STATUS, 0);
    start(&mut t, VERSION_1);
    assert!(t.is_activated());
}

#[test]
fn save_and_restore_bring_back_registers_and_queue_positions() {
    let (mut t, seen) = transport();
    start(&mut t, VERSION_1 | EVENT_IDX);
    {
        let mut s = seen.lock().unwrap();
        let (queues, _) = s.activations.last_mut().unwrap();
        queues[0].set_next_avail(5);
        queues[0].set_next_used(3);
        queues[1].set_next_avail(2);
        queues[1].set_next_used(2);
    }
    w(&mut t, regs::QUEUE_SEL, 1);
    t.interrupt().trigger(InterruptKind::UsedBuffer).unwrap();
    let state = t.save().unwrap();
    assert!(state.activated);
    assert_eq!(
        state.positions[0],
        QueuePosition {
            next_avail: 5,
            next_used: 3
        }
    );
    let json = serde_json::to_string(&state).unwrap();
    let state: TransportState = serde_json::from_str(&json).unwrap();

    let seen2 = Arc::new(Mutex::new(Seen::default()));
    let dev = Dummy {
        sizes: vec![256, 16],
        features: EVENT_IDX | (1 << 5),
        fail: false,
        last_queue_needs: None,
        seen: seen2.clone(),
    };
    let mut back = MmioTransport::restore(
        mem(),
        Box::new(dev),
        EventFd::new(EFD_NONBLOCK).unwrap(),
        &state,
    )
    .unwrap();
    assert_eq!(r(&mut back, regs::STATUS), 0xf);
    assert_eq!(back.acked_features(), VERSION_1 | EVENT_IDX);
    assert_eq!(
        r(&mut back, regs::QUEUE_READY),
        1,
        "QueueSel 1 is selected again"
    );
    assert_eq!(r(&mut back, regs::INTERRUPT_STATUS), 1);
    let s2 = seen2.lock().unwrap();
    assert_eq!(s2.acked, Some(VERSION_1 | EVENT_IDX));
    let (queues, evts) = s2.activations.last().expect("restarted");
    assert_eq!(evts.len(), 2);
    assert_eq!((queues[0].next_avail(), queues[0].next_used()), (5, 3));
    assert_eq!((queues[1].next_avail(), queues[1].next_used()), (2, 2));
    assert!(queues[0].event_idx_enabled());
}

#[test]
fn restore_refuses_a_different_device() {
    let (mut t, _) = transport();
    start(&mut t, VERSION_1);
    let state = t.save().unwrap();
    let (_, seen) = transport_with(&[256], 0, false);
    let dev = Dummy {
        sizes: vec![256],
        features: 0,
        fail: false,
        last_queue_needs: None,
        seen,
    };
    let e = MmioTransport::restore(
        mem(),
        Box::new(dev),
        EventFd::new(EFD_NONBLOCK).unwrap(),
        &state,
    )
    .err()
    .unwrap();
    assert!(e.contains("queues"), "{e}");
    // A device that was never started is restored without starting.
    let (mut idle, _) = transport();
    let state = idle.save().unwrap();
    assert!(!state.activated && state.positions.is_empty());
}

#[test]
fn only_the_queues_the_features_call_for_are_started() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let dev = Dummy {
        sizes: vec![256, 16],
        features: 1 << 5,
        fail: false,
        last_queue_needs: Some(1 << 5),
        seen: seen.clone(),
    };
    let mut t =
        MmioTransport::new(mem(), Box::new(dev), EventFd::new(EFD_NONBLOCK).unwrap()).unwrap();
    // Without the feature the driver sets up queue 0 alone: the device starts with it.
    features_ok(&mut t, VERSION_1);
    setup_queue(&mut t, 0, 256, 0x10000);
    w(&mut t, regs::STATUS, 0xf);
    assert!(t.is_activated());
    {
        let s = seen.lock().unwrap();
        let (queues, evts) = &s.activations[0];
        assert_eq!((queues.len(), evts.len()), (1, 1));
    }
    // With it, both queues must be ready.
    w(&mut t, regs::STATUS, 0);
    features_ok(&mut t, VERSION_1 | (1 << 5));
    setup_queue(&mut t, 0, 256, 0x10000);
    w(&mut t, regs::STATUS, 0xf);
    assert!(!t.is_activated(), "queue 1 is not ready");
    assert_ne!(r(&mut t, regs::STATUS) & status::DEVICE_NEEDS_RESET, 0);
    w(&mut t, regs::STATUS, 0);
    start(&mut t, VERSION_1 | (1 << 5));
    assert!(t.is_activated());
    assert_eq!(seen.lock().unwrap().activations[1].0.len(), 2);
}
