//! Property tests (proptest) of the virtio-blk request parser on mock guest memory, as the
//! `blk_request` fuzz target (fuzz/) does for hours. For any chain the guest can build: no
//! panic; an accepted request only names guest memory, its lengths add up, and reads and
//! writes are whole sectors; a refused one writes its status only inside guest memory.

use devices::virtio::block::{parse, RequestType};
use proptest::prelude::*;
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

const NEXT: u16 = 1;
const WRITE: u16 = 2;

/// [0, 1 MiB) and [2 MiB, 3 MiB): a hole between, nothing above.
fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), 0x10_0000),
        (GuestAddress(0x20_0000), 0x10_0000),
    ])
    .unwrap()
}

/// Addresses near the interesting places: region edges, the hole, the top of the address
/// space; and anything.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..0x30_0000,
        1 => prop::sample::select(&[0u64, 0xf_fff0, 0xf_ffff, 0x10_0000, 0x1f_ffff, 0x20_0000, 0x2f_ffff, 0x30_0000][..]),
        1 => (u64::MAX - 0x1000)..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 0u32..2048,
        1 => prop::sample::select(&[1u32, 15, 16, 17, 511, 512, 513, 4096, 0x10_0000][..]),
        1 => any::<u32>(),
    ]
}

fn desc() -> impl Strategy<Value = (u64, u32, u16, u16)> {
    (addr(), len(), any::<u16>(), any::<u16>())
}

/// A header the guest wrote: type (known ones more often), reserved, sector.
fn header() -> impl Strategy<Value = [u8; 16]> {
    (
        prop_oneof![3 => prop::sample::select(&[0u32, 1, 4, 8, 11, 13][..]), 1 => any::<u32>()],
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(|(t, r, s)| {
            let mut h = [0u8; 16];
            h[..4].copy_from_slice(&t.to_le_bytes());
            h[4..8].copy_from_slice(&r.to_le_bytes());
            h[8..].copy_from_slice(&s.to_le_bytes());
            h
        })
}

fn check(descs: Vec<Descriptor>, mem: &GuestMemoryMmap) {
    match parse(descs, mem, 256) {
        Ok(req) => {
            let mut sum = 0u64;
            for s in &req.data {
                assert!(s.len > 0, "{req:?}");
                assert!(
                    mem.check_range(s.addr, s.len as usize, Permissions::ReadWrite),
                    "{req:?}"
                );
                sum += u64::from(s.len);
            }
            assert_eq!(sum, req.data_len, "{req:?}");
            assert!(
                mem.check_range(req.status, 1, Permissions::ReadWrite),
                "{req:?}"
            );
            if matches!(req.request_type, RequestType::In | RequestType::Out) {
                assert_eq!(req.data_len % 512, 0, "{req:?}");
            }
        }
        Err(rejected) => {
            if let Some(status) = rejected.status {
                assert!(
                    mem.check_range(status, 1, Permissions::ReadWrite),
                    "{rejected:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Descriptors exactly as the guest wrote them (any flags, any next).
    #[test]
    fn raw_chains(descs in prop::collection::vec(desc(), 0..10), hdr in header(), at in addr()) {
        let mem = memory();
        let _ = mem.write_slice(&hdr, GuestAddress(at));
        let chain = descs.into_iter().map(|(a, l, f, n)| Descriptor::new(a, l, f, n)).collect();
        check(chain, &mem);
    }

    /// Well-linked chains (NEXT on all but the last) with a header at the head's address.
    #[test]
    fn linked_chains(descs in prop::collection::vec((addr(), len(), any::<bool>()), 1..10), hdr in header()) {
        let mem = memory();
        let _ = mem.write_slice(&hdr, GuestAddress(descs[0].0));
        let n = descs.len();
        let chain = descs
            .into_iter()
            .enumerate()
            .map(|(i, (a, l, w))| {
                let mut flags = if i + 1 < n { NEXT } else { 0 };
                if w {
                    flags |= WRITE;
                }
                Descriptor::new(a, l, flags, i as u16 + 1)
            })
            .collect();
        check(chain, &mem);
    }
}
