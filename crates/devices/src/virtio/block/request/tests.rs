use super::*;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;

const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;

/// Two regions with a hole between them: [0, 1 MiB) and [2 MiB, 3 MiB).
fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), 0x10_0000),
        (GuestAddress(0x20_0000), 0x10_0000),
    ])
    .unwrap()
}

fn put_header(mem: &GuestMemoryMmap, addr: u64, request_type: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&request_type.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(addr)).unwrap();
}

#[derive(Clone, Copy)]
enum Dir {
    R,
    W,
}

/// A chain of descriptors (NEXT set on all but the last).
fn chain(descs: &[(u64, u32, Dir)]) -> Vec<Descriptor> {
    descs
        .iter()
        .enumerate()
        .map(|(i, &(addr, len, dir))| {
            let mut flags = if i + 1 < descs.len() { NEXT } else { 0 };
            if let Dir::W = dir {
                flags |= WRITE;
            }
            Descriptor::new(addr, len, flags, i as u16 + 1)
        })
        .collect()
}

fn ok(descs: &[(u64, u32, Dir)], mem: &GuestMemoryMmap) -> Request {
    parse(chain(descs), mem, 256).unwrap()
}

fn err(descs: &[(u64, u32, Dir)], mem: &GuestMemoryMmap) -> Rejected {
    parse(chain(descs), mem, 256).unwrap_err()
}

fn seg(addr: u64, len: u32) -> Segment {
    Segment {
        addr: GuestAddress(addr),
        len,
    }
}

use Dir::{R, W};

#[test]
fn read_request() {
    let m = mem();
    put_header(&m, 0x1000, 0, 5);
    let r = ok(
        &[
            (0x1000, 16, R),
            (0x2000, 512, W),
            (0x20_0000, 1024, W),
            (0x4000, 1, W),
        ],
        &m,
    );
    assert_eq!(
        r,
        Request {
            request_type: RequestType::In,
            sector: 5,
            data: vec![seg(0x2000, 512), seg(0x20_0000, 1024)],
            data_len: 1536,
            status: GuestAddress(0x4000),
        }
    );
}

#[test]
fn write_request() {
    let m = mem();
    put_header(&m, 0x1000, 1, u64::MAX);
    let r = ok(&[(0x1000, 16, R), (0x2000, 4096, R), (0x4000, 1, W)], &m);
    assert_eq!(r.request_type, RequestType::Out);
    assert_eq!(r.sector, u64::MAX, "range checks happen at execution");
    assert_eq!(r.data, vec![seg(0x2000, 4096)]);
}

#[test]
fn flush_get_id_discard_and_unknown() {
    let m = mem();
    put_header(&m, 0x1000, 4, 0);
    let r = ok(&[(0x1000, 16, R), (0x4000, 1, W)], &m);
    assert_eq!((r.request_type, r.data_len), (RequestType::Flush, 0));

    put_header(&m, 0x1000, 8, 0);
    let r = ok(&[(0x1000, 16, R), (0x2000, 20, W), (0x4000, 1, W)], &m);
    assert_eq!(r.request_type, RequestType::GetId);
    assert_eq!(r.data, vec![seg(0x2000, 20)]);

    put_header(&m, 0x1000, 11, 0);
    let r = ok(&[(0x1000, 16, R), (0x2000, 16, R), (0x4000, 1, W)], &m);
    assert_eq!(r.request_type, RequestType::Discard);
    assert_eq!(r.data_len, 16);

    put_header(&m, 0x1000, 13, 0);
    let r = ok(&[(0x1000, 16, R), (0x2000, 16, R), (0x4000, 1, W)], &m);
    assert_eq!(r.request_type, RequestType::WriteZeroes);

    // Unknown types keep their status byte whatever their data looks like.
    put_header(&m, 0x1000, 99, 0);
    let r = ok(
        &[
            (0x1000, 16, R),
            (0x2000, 3, W),
            (0x3000, 7, R),
            (0x4000, 1, W),
        ],
        &m,
    );
    assert_eq!(r.request_type, RequestType::Unsupported(99));
    assert!(r.data.is_empty());
    assert_eq!(r.status, GuestAddress(0x4000));
}

#[test]
fn header_and_data_may_share_a_descriptor() {
    let m = mem();
    put_header(&m, 0x1000, 1, 0);
    let r = ok(&[(0x1000, 16 + 512, R), (0x4000, 1, W)], &m);
    assert_eq!(r.data, vec![seg(0x1010, 512)]);
    // Data and status may share the last descriptor.
    put_header(&m, 0x1000, 0, 0);
    let r = ok(&[(0x1000, 16, R), (0x2000, 513, W)], &m);
    assert_eq!(r.data, vec![seg(0x2000, 512)]);
    assert_eq!(r.status, GuestAddress(0x2200));
    // Extra bytes that are not data for this type are ignored.
    let r = ok(&[(0x1000, 32, R), (0x2000, 512, W), (0x4000, 1, W)], &m);
    assert_eq!(r.data, vec![seg(0x2000, 512)]);
    put_header(&m, 0x1000, 4, 0);
    let r = ok(&[(0x1000, 32, R), (0x4000, 4, W)], &m);
    assert!(r.data.is_empty());
    assert_eq!(r.status, GuestAddress(0x4003));
}

#[test]
fn zero_length_data_descriptors_are_dropped() {
    let m = mem();
    put_header(&m, 0x1000, 0, 0);
    let r = ok(
        &[
            (0x1000, 16, R),
            (0x2000, 0, W),
            (0x3000, 512, W),
            (0x4000, 1, W),
        ],
        &m,
    );
    assert_eq!(r.data, vec![seg(0x3000, 512)]);
    // A zero-length descriptor anywhere in memory does not matter.
    let r = ok(
        &[(0x1000, 16, R), (0xdead_0000_0000, 0, W), (0x4000, 1, W)],
        &m,
    );
    assert!(r.data.is_empty());
}

fn status_less(descs: &[(u64, u32, Dir)], m: &GuestMemoryMmap, error: ParseError) {
    assert_eq!(
        err(descs, m),
        Rejected {
            error,
            status: None
        }
    );
}

#[test]
fn chains_without_a_usable_status_byte() {
    let m = mem();
    put_header(&m, 0x1000, 0, 0);
    assert_eq!(parse(vec![], &m, 256).unwrap_err().error, ParseError::Empty);
    status_less(&[(0x1000, 16, R), (0x4000, 1, R)], &m, ParseError::NoStatus);
    status_less(&[(0x1000, 16, R), (0x4000, 0, W)], &m, ParseError::NoStatus);
    // In the hole, past the end, at the very top of the address space.
    status_less(
        &[(0x1000, 16, R), (0x18_0000, 1, W)],
        &m,
        ParseError::NoStatus,
    );
    status_less(
        &[(0x1000, 16, R), (0x30_0000, 1, W)],
        &m,
        ParseError::NoStatus,
    );
    status_less(
        &[(0x1000, 16, R), (u64::MAX, 1, W)],
        &m,
        ParseError::NoStatus,
    );
    status_less(
        &[(0x1000, 16, R), (u64::MAX, 2, W)],
        &m,
        ParseError::NoStatus,
    );
    status_less(
        &[(0x1000, 16, R), (u64::MAX - 5, u32::MAX, W)],
        &m,
        ParseError::NoStatus,
    );
    // The last descriptor still says NEXT: the chain was cut short.
    let mut c = chain(&[(0x1000, 16, R), (0x4000, 1, W)]);
    c[1] = Descriptor::new(0x4000, 1, WRITE | NEXT, 7);
    assert_eq!(
        parse(c, &m, 256).unwrap_err(),
        Rejected {
            error: ParseError::Unterminated,
            status: None
        }
    );
}

fn with_status(descs: &[(u64, u32, Dir)], m: &GuestMemoryMmap, error: ParseError) {
    let status = descs.last().map(|d| GuestAddress(d.0 + u64::from(d.1) - 1));
    assert_eq!(err(descs, m), Rejected { error, status });
}

#[test]
fn bad_headers_fail_with_status() {
    let m = mem();
    put_header(&m, 0x1000, 0, 0);
    with_status(&[(0x4000, 1, W)], &m, ParseError::NoHeader);
    with_status(
        &[(0x1000, 16, W), (0x4000, 1, W)],
        &m,
        ParseError::HeaderWritable,
    );
    with_status(
        &[(0x1000, 15, R), (0x4000, 1, W)],
        &m,
        ParseError::HeaderTooShort(15),
    );
    with_status(
        &[(0x1000, 0, R), (0x4000, 1, W)],
        &m,
        ParseError::HeaderTooShort(0),
    );
    with_status(
        &[(0x18_0000, 16, R), (0x4000, 1, W)],
        &m,
        ParseError::OutOfMemory(0x18_0000, 16),
    );
    // Straddling the end of a region into the hole.
    with_status(
        &[(0xf_fff8, 16, R), (0x4000, 1, W)],
        &m,
        ParseError::OutOfMemory(0xf_fff8, 16),
    );
    with_status(
        &[(u64::MAX - 3, 16, R), (0x4000, 1, W)],
        &m,
        ParseError::OutOfMemory(u64::MAX - 3, 16),
    );
}

#[test]
fn data_in_the_wrong_direction_fails() {
    let m = mem();
    put_header(&m, 0x1000, 0, 0);
    with_status(
        &[(0x1000, 16, R), (0x2000, 512, R), (0x4000, 1, W)],
        &m,
        ParseError::WrongDirection(RequestType::In),
    );
    put_header(&m, 0x1000, 1, 0);
    with_status(
        &[(0x1000, 16, R), (0x2000, 512, W), (0x4000, 1, W)],
        &m,
        ParseError::WrongDirection(RequestType::Out),
    );
    put_header(&m, 0x1000, 8, 0);
    with_status(
        &[(0x1000, 16, R), (0x2000, 20, R), (0x4000, 1, W)],
        &m,
        ParseError::WrongDirection(RequestType::GetId),
    );
    put_header(&m, 0x1000, 11, 0);
    with_status(
        &[(0x1000, 16, R), (0x2000, 16, W), (0x4000, 1, W)],
        &m,
        ParseError::WrongDirection(RequestType::Discard),
    );
}

#[test]
fn data_outside_guest_memory_fails() {
    let m = mem();
    put_header(&m, 0x1000, 0, 0);
    for (addr, len) in [
        (0x18_0000u64, 512u32),
        (0xf_ff00, 512),
        (0x2f_ff00, 512),
        (0x40_0000, 512),
        (u64::MAX - 10, 512),
    ] {
        with_status(
            &[
                (0x1000, 16, R),
                (0x2000, 512, W),
                (addr, len, W),
                (0x4000, 1, W),
            ],
            &m,
            ParseError::OutOfMemory(addr, len),
        );
    }
}

#[test]
fn read_write_lengths_must_be_whole_sectors() {
    let m = mem();
    put_header(&m, 0x1000, 0, 0);
    with_status(
        &[(0x1000, 16, R), (0x2000, 100, W), (0x4000, 1, W)],
        &m,
        ParseError::UnalignedLength(100),
    );
    // Split across descriptors unevenly is fine as long as the total is.
    let r = ok(
        &[
            (0x1000, 16, R),
            (0x2000, 100, W),
            (0x3000, 412, W),
            (0x4000, 1, W),
        ],
        &m,
    );
    assert_eq!(r.data_len, 512);
    put_header(&m, 0x1000, 1, 0);
    with_status(
        &[(0x1000, 16, R), (0x2000, 511, R), (0x4000, 1, W)],
        &m,
        ParseError::UnalignedLength(511),
    );
}

#[test]
fn descriptor_count_is_bounded() {
    let m = mem();
    put_header(&m, 0x1000, 0, 0);
    let mut d = vec![(0x1000, 16, R)];
    d.extend((0..8).map(|i| (0x2000 + i * 512, 512, W)));
    d.push((0x4000, 1, W));
    assert!(parse(chain(&d), &m, 10).is_ok());
    assert_eq!(
        parse(chain(&d), &m, 9).unwrap_err(),
        Rejected {
            error: ParseError::TooLong(9),
            status: None
        }
    );
    // An endless descriptor source is not followed past the bound.
    let endless = std::iter::repeat(Descriptor::new(0x2000, 512, WRITE | NEXT, 0));
    assert_eq!(
        parse(endless, &m, 256).unwrap_err().error,
        ParseError::TooLong(256)
    );
}

// The same rules through real descriptor chains read from a (mock) queue in guest memory.

fn raw(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

#[test]
fn real_chain_parses() {
    let m = mem();
    let vq = MockSplitQueue::create(&m, GuestAddress(0x8000), 16);
    put_header(&m, 0x1000, 0, 3);
    let c = vq
        .build_desc_chain(&[
            raw(0x1000, 16, 0, 0),
            raw(0x2000, 512, WRITE, 0),
            raw(0x4000, 1, WRITE, 0),
        ])
        .unwrap();
    let r = parse(c, &m, 16).unwrap();
    assert_eq!(
        (r.request_type, r.sector, r.data_len),
        (RequestType::In, 3, 512)
    );
}

#[test]
fn looping_chain_is_rejected() {
    let m = mem();
    let vq = MockSplitQueue::create(&m, GuestAddress(0x8000), 16);
    put_header(&m, 0x1000, 0, 0);
    let c = vq
        .build_multiple_desc_chains(&[
            raw(0x1000, 16, NEXT, 1),
            raw(0x2000, 512, WRITE | NEXT, 2),
            raw(0x4000, 1, WRITE | NEXT, 1),
        ])
        .unwrap();
    assert_eq!(
        parse(c, &m, 16).unwrap_err(),
        Rejected {
            error: ParseError::Unterminated,
            status: None
        }
    );
}

#[test]
fn next_index_out_of_the_table_is_rejected() {
    let m = mem();
    let vq = MockSplitQueue::create(&m, GuestAddress(0x8000), 16);
    put_header(&m, 0x1000, 0, 0);
    let c = vq
        .build_multiple_desc_chains(&[raw(0x1000, 16, NEXT, 200), raw(0x4000, 1, WRITE, 0)])
        .unwrap();
    assert_eq!(
        parse(c, &m, 16).unwrap_err().error,
        ParseError::Unterminated
    );
}

#[test]
fn broken_indirect_tables_are_rejected() {
    let m = mem();
    let vq = MockSplitQueue::create(&m, GuestAddress(0x8000), 16);
    // Table length not a multiple of 16.
    let c = vq
        .build_multiple_desc_chains(&[raw(0x5000, 24, INDIRECT, 0)])
        .unwrap();
    assert_eq!(parse(c, &m, 16).unwrap_err().error, ParseError::Empty);
    // Table outside guest memory.
    let c = vq
        .build_multiple_desc_chains(&[raw(0x18_0000, 48, INDIRECT, 0)])
        .unwrap();
    assert_eq!(parse(c, &m, 16).unwrap_err().error, ParseError::Empty);
    // A huge indirect table is cut at the bound.
    for i in 0..300u64 {
        m.write_obj(
            raw(0x2000, 512, WRITE | NEXT, (i + 1) as u16),
            GuestAddress(0x20_0000 + i * 16),
        )
        .unwrap();
    }
    let c = vq
        .build_multiple_desc_chains(&[raw(0x20_0000, 300 * 16, INDIRECT, 0)])
        .unwrap();
    assert_eq!(
        parse(c, &m, 256).unwrap_err().error,
        ParseError::TooLong(256)
    );
}

#[test]
fn valid_indirect_chain_parses() {
    let m = mem();
    let vq = MockSplitQueue::create(&m, GuestAddress(0x8000), 16);
    put_header(&m, 0x1000, 1, 9);
    let table = [
        raw(0x1000, 16, NEXT, 1),
        raw(0x2000, 1024, NEXT, 2),
        raw(0x4000, 1, WRITE, 0),
    ];
    for (i, d) in table.iter().enumerate() {
        m.write_obj(*d, GuestAddress(0x6000 + i as u64 * 16))
            .unwrap();
    }
    let c = vq
        .build_multiple_desc_chains(&[raw(0x6000, 48, INDIRECT, 0)])
        .unwrap();
    let r = parse(c, &m, 16).unwrap();
    assert_eq!(
        (r.request_type, r.sector, r.data_len),
        (RequestType::Out, 9, 1024)
    );
}
