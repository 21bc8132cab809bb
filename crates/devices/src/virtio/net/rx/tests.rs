use super::*;
use crate::virtio::net::test_utils::*;
use virtio_queue::desc::split::Descriptor;

fn num_buffers(m: &GuestMemoryMmap, addr: u64) -> u16 {
    let b = read_guest(m, addr + 10, 2);
    u16::from_le_bytes([b[0], b[1]])
}

#[test]
fn a_frame_goes_into_one_buffer_with_num_buffers_one() {
    let m = mem();
    let vq = TestQueue::new(&m, RXQ);
    vq.rx_buffer(0, 0x20_0000, 2048);
    let mut q = vq.create_queue();
    let data = payload(1, 1000);
    let mut f = tap_frame(&data);
    let mut s = RxScratch::default();
    for mergeable in [false, true] {
        let r = deliver(&mut q, &m, &mut f, mergeable, &mut s);
        assert_eq!(r, RxOutcome::Delivered { buffers: 1, bad: 0 });
        assert_eq!(num_buffers(&m, 0x20_0000), 1);
        assert_eq!(read_guest(&m, 0x20_0000 + 12, 1000), data);
        vq.rx_buffer(0, 0x20_0000, 2048);
    }
    assert_eq!(vq.used(), vec![(0, 1012), (0, 1012)]);
}

#[test]
fn mergeable_frames_span_buffers_and_say_how_many() {
    let m = mem();
    let vq = TestQueue::new(&m, RXQ);
    for i in 0..4 {
        vq.rx_buffer(i, 0x20_0000 + u64::from(i) * 0x1000, 1000);
    }
    let mut q = vq.create_queue();
    let data = payload(7, 2500);
    let mut f = tap_frame(&data);
    let r = deliver(&mut q, &m, &mut f, true, &mut RxScratch::default());
    assert_eq!(r, RxOutcome::Delivered { buffers: 3, bad: 0 });
    assert_eq!(vq.used(), vec![(0, 1000), (1, 1000), (2, 512)]);
    assert_eq!(num_buffers(&m, 0x20_0000), 3);
    let mut got = read_guest(&m, 0x20_0000 + 12, 988);
    got.extend(read_guest(&m, 0x20_1000, 1000));
    got.extend(read_guest(&m, 0x20_2000, 512));
    assert_eq!(got, data);
    assert_eq!(
        q.next_avail(),
        3,
        "the fourth buffer stays for the next frame"
    );
}

#[test]
fn a_frame_waits_when_the_guest_is_slow_and_nothing_is_taken() {
    let m = mem();
    let vq = TestQueue::new(&m, RXQ);
    vq.rx_buffer(0, 0x20_0000, 1000);
    let mut q = vq.create_queue();
    let mut f = tap_frame(&payload(3, 1900));
    let mut s = RxScratch::default();
    assert_eq!(
        deliver(&mut q, &m, &mut f, true, &mut s),
        RxOutcome::NoRoom { bad: 0 }
    );
    assert_eq!(q.next_avail(), 0);
    assert!(vq.used().is_empty());
    // No buffers at all: the same.
    let mut empty = TestQueue::new(&m, TXQ).create_queue();
    assert_eq!(
        deliver(&mut empty, &m, &mut f, false, &mut s),
        RxOutcome::NoRoom { bad: 0 }
    );
    // The guest adds a buffer: now it fits, nothing was lost.
    vq.rx_buffer(1, 0x20_1000, 1000);
    assert_eq!(
        deliver(&mut q, &m, &mut f, true, &mut s),
        RxOutcome::Delivered { buffers: 2, bad: 0 }
    );
    assert_eq!(vq.used(), vec![(0, 1000), (1, 912)]);
}

#[test]
fn frames_that_can_never_fit_are_dropped_and_the_buffers_stay() {
    let m = mem();
    let vq = TestQueue::new(&m, RXQ);
    vq.rx_buffer(0, 0x20_0000, 1526);
    let mut q = vq.create_queue();
    let mut s = RxScratch::default();
    // Without MRG_RXBUF a frame bigger than a buffer has nowhere to go.
    let mut big = tap_frame(&payload(1, 4000));
    assert_eq!(
        deliver(&mut q, &m, &mut big, false, &mut s),
        RxOutcome::TooBig { bad: 0 }
    );
    assert_eq!(q.next_avail(), 0);
    let mut small = tap_frame(&payload(2, 100));
    assert_eq!(
        deliver(&mut q, &m, &mut small, false, &mut s),
        RxOutcome::Delivered { buffers: 1, bad: 0 }
    );
    // With it, a frame bigger than the whole ring.
    let vq = TestQueue::new(&m, TXQ);
    for i in 0..QSIZE {
        vq.rx_buffer(i, 0x30_0000 + u64::from(i) * 0x100, 64);
    }
    let mut q = vq.create_queue();
    let mut f = tap_frame(&payload(4, 64 * usize::from(QSIZE)));
    assert_eq!(
        deliver(&mut q, &m, &mut f, true, &mut s),
        RxOutcome::TooBig { bad: 0 }
    );
    assert_eq!(q.next_avail(), 0);
    assert!(vq.used().is_empty());
}

#[test]
fn unusable_chains_fail_alone_and_the_frame_takes_the_next_buffer() {
    let m = mem();
    for mergeable in [false, true] {
        let vq = TestQueue::new(&m, RXQ);
        // Device-readable, outside memory, wrapping, too small for the header, a loop, a
        // head past the descriptor table's end; then a good one.
        vq.set_desc(0, Descriptor::new(0x20_0000, 2048, 0, 0));
        vq.push_avail(0);
        vq.rx_buffer(1, 1 << 40, 2048);
        vq.rx_buffer(2, u64::MAX - 100, 2048);
        vq.rx_buffer(3, 0x20_0000, 11);
        vq.set_desc(4, Descriptor::new(0x20_0000, 64, WRITE | NEXT, 5));
        vq.set_desc(5, Descriptor::new(0x20_1000, 64, WRITE | NEXT, 4));
        vq.push_avail(4);
        vq.set_desc(6, Descriptor::new(0x20_0000, 64, WRITE | NEXT, 200));
        vq.push_avail(6);
        vq.rx_buffer(7, 0x28_0000, 2048);
        let mut q = vq.create_queue();
        let data = payload(9, 600);
        let mut f = tap_frame(&data);
        let mut s = RxScratch::default();
        assert_eq!(
            deliver(&mut q, &m, &mut f, mergeable, &mut s),
            RxOutcome::Delivered { buffers: 1, bad: 6 },
            "mergeable={mergeable}"
        );
        assert_eq!(
            vq.used(),
            vec![(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (6, 0), (7, 612)]
        );
        assert_eq!(read_guest(&m, 0x28_0000 + 12, 600), data);
    }
}

#[test]
fn an_unusable_chain_between_buffers_goes_back_after_the_frame() {
    let m = mem();
    let vq = TestQueue::new(&m, RXQ);
    vq.rx_buffer(0, 0x20_0000, 100);
    vq.rx_buffer(1, 1 << 40, 100);
    vq.rx_buffer(2, 0x20_1000, 100);
    let mut q = vq.create_queue();
    let mut f = tap_frame(&payload(5, 150));
    let r = deliver(&mut q, &m, &mut f, true, &mut RxScratch::default());
    assert_eq!(r, RxOutcome::Delivered { buffers: 2, bad: 1 });
    // The frame's buffers first, in order, then the refused one.
    assert_eq!(vq.used(), vec![(0, 100), (2, 62), (1, 0)]);
    assert_eq!(num_buffers(&m, 0x20_0000), 2);
}

#[test]
fn a_head_past_the_queue_breaks_it() {
    let m = mem();
    let vq = TestQueue::new(&m, RXQ);
    vq.push_avail(QSIZE + 3);
    let mut q = vq.create_queue();
    let r = deliver(
        &mut q,
        &m,
        &mut tap_frame(&[1; 60]),
        true,
        &mut RxScratch::default(),
    );
    assert!(matches!(r, RxOutcome::Broken(_)), "{r:?}");
    // So does an avail index more than a ring ahead.
    let vq = TestQueue::new(&m, TXQ);
    vq.set_avail_idx(QSIZE + 1);
    let mut q = vq.create_queue();
    let r = deliver(
        &mut q,
        &m,
        &mut tap_frame(&[1; 60]),
        true,
        &mut RxScratch::default(),
    );
    assert!(matches!(r, RxOutcome::Broken(_)), "{r:?}");
}

#[test]
fn has_buffers_follows_the_avail_index() {
    let m = mem();
    let vq = TestQueue::new(&m, RXQ);
    let mut q = vq.create_queue();
    assert!(!has_buffers(&q, &m).unwrap());
    vq.rx_buffer(0, 0x20_0000, 2048);
    assert!(has_buffers(&q, &m).unwrap());
    deliver(
        &mut q,
        &m,
        &mut tap_frame(&[0; 60]),
        false,
        &mut RxScratch::default(),
    );
    assert!(!has_buffers(&q, &m).unwrap());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Addresses near the interesting places (the buffers, the end of memory, the top of the
    /// address space) and anything.
    fn addr() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0x20_0000u64..0x20_4000,
            1 => prop::sample::select(&[0u64, 0xff_fff0, 0xff_ffff, 0x100_0000][..]),
            1 => (u64::MAX - 0x1000)..=u64::MAX,
            1 => any::<u64>(),
        ]
    }

    fn len() -> impl Strategy<Value = u32> {
        prop_oneof![4 => 0u32..3000, 1 => prop::sample::select(&[11u32, 12, 13, 65536][..]), 1 => any::<u32>()]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any ring the guest can write: no panic; what is used names heads of the queue; a
        /// delivered frame's buffers add up to the frame, and nothing else is written there.
        #[test]
        fn any_receive_ring(
            descs in prop::collection::vec((addr(), len(), any::<u16>(), any::<u16>()), 16),
            heads in prop::collection::vec(any::<u16>(), 0..20),
            frame_len in 12usize..9000,
            mergeable in any::<bool>(),
        ) {
            let m = mem();
            let vq = TestQueue::new(&m, RXQ);
            for (i, (a, l, f, n)) in descs.iter().enumerate() {
                vq.set_desc(i as u16, Descriptor::new(*a, *l, *f & 7, *n));
            }
            for h in &heads {
                vq.push_avail(h % (QSIZE + 4));
            }
            let mut q = vq.create_queue();
            let mut frame = tap_frame(&payload(1, frame_len - 12));
            let r = deliver(&mut q, &m, &mut frame, mergeable, &mut RxScratch::default());
            let used = vq.used();
            prop_assert!(used.len() <= heads.len());
            for &(id, _) in &used {
                prop_assert!(id < u32::from(QSIZE), "{used:?}");
            }
            if let RxOutcome::Delivered { buffers, bad } = r {
                prop_assert_eq!(used.len(), usize::from(buffers + bad));
                let total: u64 = used.iter().map(|&(_, l)| u64::from(l)).sum();
                prop_assert_eq!(total, frame.len() as u64);
                prop_assert!(mergeable || buffers == 1);
            }
        }

        /// Any transmit chain: no panic; an accepted one is whole, bounded, and only names
        /// guest memory.
        #[test]
        fn any_transmit_chain(
            descs in prop::collection::vec((addr(), len(), any::<u16>(), any::<u16>()), 16),
            head in 0u16..QSIZE,
        ) {
            use virtio_queue::QueueOwnedT;
            let m = mem();
            let vq = TestQueue::new(&m, TXQ);
            for (i, (a, l, f, n)) in descs.iter().enumerate() {
                vq.set_desc(i as u16, Descriptor::new(*a, *l, *f & 7, *n));
            }
            vq.push_avail(head);
            let mut q = vq.create_queue();
            let chain = q.iter(&m).unwrap().next().unwrap();
            let mut iov = crate::virtio::net::tx::IoVecs::default();
            if let Ok(len) = crate::virtio::net::tx::gather(chain, &m, &mut iov) {
                prop_assert!((12..=crate::virtio::net::tx::MAX_TX_LEN).contains(&len));
                let base = m.get_host_address(vm_memory::GuestAddress(0)).unwrap() as usize;
                let mut sum = 0;
                for v in &iov.0 {
                    let start = v.iov_base as usize;
                    prop_assert!(start >= base && start + v.iov_len <= base + 0x100_0000);
                    sum += v.iov_len;
                }
                prop_assert_eq!(sum, len);
            }
        }
    }
}
