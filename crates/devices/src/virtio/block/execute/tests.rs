use super::super::backend::BlockBackend;
use super::*;
use vm_memory::GuestAddress;
use vmm_sys_util::tempfile::TempFile;

const SECTORS: u64 = 2048; // 1 MiB

fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add((i / 512) as u8 ^ seed)
        })
        .collect()
}

fn image() -> (TempFile, Vec<u8>) {
    let f = TempFile::new_with_prefix("/tmp/sv-blk-exec").unwrap();
    let data = pattern((SECTORS * SECTOR_SIZE) as usize, 7);
    std::fs::write(f.as_path(), &data).unwrap();
    (f, data)
}

fn disk(f: &TempFile, read_only: bool, direct: bool) -> Disk {
    Disk::new(
        BlockBackend::open(f.as_path(), read_only, direct).unwrap(),
        "serial-0123456789abcdef",
    )
}

fn seg(addr: u64, len: u32) -> Segment {
    Segment {
        addr: GuestAddress(addr),
        len,
    }
}

fn req(request_type: RequestType, sector: u64, data: Vec<Segment>) -> Request {
    let data_len = data.iter().map(|s| u64::from(s.len)).sum();
    Request {
        request_type,
        sector,
        data,
        data_len,
        status: GuestAddress(0x1f_0000),
    }
}

fn run(r: &Request, m: &GuestMemoryMmap, d: Option<&Disk>) -> Outcome {
    execute(r, m, d, &mut AlignedBuf::new(super::super::IO_CHUNK))
}

fn ok(written: u32) -> Outcome {
    Outcome {
        status: S_OK,
        written,
    }
}

const IOERR: Outcome = Outcome {
    status: S_IOERR,
    written: 0,
};

fn guest(m: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0; len];
    m.read_slice(&mut v, GuestAddress(addr)).unwrap();
    v
}

/// Unaligned, uneven guest buffers that add up to 3 sectors.
fn odd_segments() -> Vec<Segment> {
    vec![seg(0x1003, 100), seg(0x2001, 412), seg(0x30_00, 1)]
        .into_iter()
        .chain([seg(0x4007, 1023)])
        .collect()
}

fn read_into_odd_buffers(direct: bool) {
    let (f, data) = image();
    let d = disk(&f, false, direct);
    let m = mem();
    let r = req(RequestType::In, 3, odd_segments());
    assert_eq!(run(&r, &m, Some(&d)), ok(1536));
    let mut got = Vec::new();
    for s in &r.data {
        got.extend(guest(&m, s.addr.0, s.len as usize));
    }
    assert_eq!(got, data[3 * 512..6 * 512]);
}

fn write_from_odd_buffers(direct: bool) {
    let (f, mut data) = image();
    let d = disk(&f, false, direct);
    let m = mem();
    let r = req(RequestType::Out, 10, odd_segments());
    let new = pattern(1536, 99);
    let mut at = 0;
    for s in &r.data {
        m.write_slice(&new[at..at + s.len as usize], s.addr)
            .unwrap();
        at += s.len as usize;
    }
    assert_eq!(run(&r, &m, Some(&d)), ok(0));
    data[10 * 512..13 * 512].copy_from_slice(&new);
    assert_eq!(std::fs::read(f.as_path()).unwrap(), data);
}

#[test]
fn read_into_unaligned_buffers() {
    read_into_odd_buffers(false);
}

#[test]
fn read_into_unaligned_buffers_with_o_direct() {
    read_into_odd_buffers(true);
}

#[test]
fn write_from_unaligned_buffers() {
    write_from_odd_buffers(false);
}

#[test]
fn write_from_unaligned_buffers_with_o_direct() {
    write_from_odd_buffers(true);
}

#[test]
fn requests_larger_than_the_bounce_buffer() {
    let (f, data) = image();
    let d = disk(&f, false, true);
    let m = mem();
    // 600 KiB in three buffers, more than two bounce-buffer chunks.
    let segs = vec![
        seg(0x1_0001, 200 * 1024),
        seg(0x8_0000, 300 * 1024 - 1),
        seg(0x10_0000, 100 * 1024 + 1),
    ];
    let r = req(RequestType::In, 100, segs.clone());
    assert_eq!(run(&r, &m, Some(&d)), ok(600 * 1024));
    let mut got = Vec::new();
    for s in &segs {
        got.extend(guest(&m, s.addr.0, s.len as usize));
    }
    assert_eq!(got, data[100 * 512..100 * 512 + 600 * 1024]);
    // And back out, elsewhere.
    let w = req(RequestType::Out, 800, segs);
    assert_eq!(run(&w, &m, Some(&d)), ok(0));
    let file = std::fs::read(f.as_path()).unwrap();
    assert_eq!(file[800 * 512..800 * 512 + 600 * 1024], got[..]);
}

#[test]
fn past_the_end_fails() {
    let (f, _) = image();
    let d = disk(&f, false, false);
    let m = mem();
    let last = SECTORS - 1;
    assert_eq!(
        run(
            &req(RequestType::In, last, vec![seg(0x1000, 512)]),
            &m,
            Some(&d)
        ),
        ok(512)
    );
    for (sector, len) in [
        (SECTORS, 512),
        (last, 1024),
        (u64::MAX, 512),
        (u64::MAX / 512, 512),
        (u64::MAX / 512 + 1, 0),
    ] {
        for t in [RequestType::In, RequestType::Out] {
            let r = req(t, sector, vec![seg(0x1000, len)]);
            assert_eq!(
                run(&r, &m, Some(&d)),
                IOERR,
                "{t:?} sector {sector} len {len}"
            );
        }
    }
    // A zero-length read at the end is in range.
    assert_eq!(
        run(&req(RequestType::In, SECTORS, vec![]), &m, Some(&d)),
        ok(0)
    );
}

#[test]
fn read_only_disk_refuses_writes() {
    let (f, data) = image();
    let d = disk(&f, true, false);
    let m = mem();
    assert_eq!(
        run(
            &req(RequestType::Out, 0, vec![seg(0x1000, 512)]),
            &m,
            Some(&d)
        ),
        IOERR
    );
    m.write_slice(&[0u8; 16], GuestAddress(0x1000)).unwrap();
    m.write_obj(1u32, GuestAddress(0x1008)).unwrap();
    for t in [RequestType::Discard, RequestType::WriteZeroes] {
        assert_eq!(run(&req(t, 0, vec![seg(0x1000, 16)]), &m, Some(&d)), IOERR);
    }
    assert_eq!(std::fs::read(f.as_path()).unwrap(), data);
    // Reads and flushes work.
    assert_eq!(
        run(
            &req(RequestType::In, 0, vec![seg(0x1000, 512)]),
            &m,
            Some(&d)
        ),
        ok(512)
    );
    assert_eq!(
        run(&req(RequestType::Flush, 0, vec![]), &m, Some(&d)),
        ok(0)
    );
}

#[test]
fn flush_and_get_id() {
    let (f, _) = image();
    let d = disk(&f, false, false);
    let m = mem();
    assert_eq!(
        run(&req(RequestType::Flush, 0, vec![]), &m, Some(&d)),
        ok(0)
    );
    let r = req(RequestType::GetId, 0, vec![seg(0x1000, 20)]);
    assert_eq!(run(&r, &m, Some(&d)), ok(20));
    assert_eq!(guest(&m, 0x1000, 20), b"serial-0123456789abc");
    // A short buffer gets what fits; a long one 20 bytes.
    m.write_slice(&[0xff; 64], GuestAddress(0x2000)).unwrap();
    let r = req(RequestType::GetId, 0, vec![seg(0x2000, 4), seg(0x2010, 3)]);
    assert_eq!(run(&r, &m, Some(&d)), ok(7));
    assert_eq!(guest(&m, 0x2000, 4), b"seri");
    assert_eq!(guest(&m, 0x2010, 4), b"al-\xff");
    // A short serial is NUL-padded (another image: the first one is locked for writing).
    let (f2, _) = image();
    let short = Disk::new(
        BlockBackend::open(f2.as_path(), true, false).unwrap(),
        "abc",
    );
    let r = req(RequestType::GetId, 0, vec![seg(0x3000, 64)]);
    m.write_slice(&[0xff; 64], GuestAddress(0x3000)).unwrap();
    assert_eq!(run(&r, &m, Some(&short)), ok(20));
    let mut want = b"abc".to_vec();
    want.resize(20, 0);
    want.extend([0xff; 44]);
    assert_eq!(guest(&m, 0x3000, 64), want);
}

#[test]
fn empty_slot_fails_everything() {
    let m = mem();
    for t in [
        RequestType::In,
        RequestType::Out,
        RequestType::Flush,
        RequestType::GetId,
        RequestType::Discard,
        RequestType::WriteZeroes,
    ] {
        assert_eq!(
            run(&req(t, 0, vec![seg(0x1000, 512)]), &m, None),
            IOERR,
            "{t:?}"
        );
    }
    let unsupp = Outcome {
        status: S_UNSUPP,
        written: 0,
    };
    assert_eq!(
        run(&req(RequestType::Unsupported(2), 0, vec![]), &m, None),
        unsupp
    );
}

#[test]
fn unknown_types_are_unsupported() {
    let (f, _) = image();
    let d = disk(&f, false, false);
    for t in [2, 14, 15, 0x8000_0000, u32::MAX] {
        let o = run(
            &req(RequestType::Unsupported(t), 0, vec![]),
            &mem(),
            Some(&d),
        );
        assert_eq!(o.status, S_UNSUPP, "type {t}");
    }
}

fn range(m: &GuestMemoryMmap, sector: u64, num: u32, flags: u32) -> Vec<Segment> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&sector.to_le_bytes());
    b[8..12].copy_from_slice(&num.to_le_bytes());
    b[12..].copy_from_slice(&flags.to_le_bytes());
    m.write_slice(&b, GuestAddress(0x5000)).unwrap();
    // Split the segment oddly to exercise the gather.
    vec![seg(0x5000, 5), seg(0x5005, 11)]
}

#[test]
fn discard_and_write_zeroes() {
    let (f, mut data) = image();
    let d = disk(&f, false, false);
    let m = mem();
    let r = req(RequestType::Discard, 8, range(&m, 8, 16, 0));
    assert_eq!(run(&r, &m, Some(&d)), ok(0));
    data[8 * 512..24 * 512].fill(0);
    let r = req(RequestType::WriteZeroes, 0, range(&m, 30, 3, 1));
    assert_eq!(run(&r, &m, Some(&d)), ok(0));
    data[30 * 512..33 * 512].fill(0);
    let r = req(RequestType::WriteZeroes, 0, range(&m, 40, 1, 0));
    assert_eq!(run(&r, &m, Some(&d)), ok(0));
    data[40 * 512..41 * 512].fill(0);
    assert_eq!(std::fs::read(f.as_path()).unwrap(), data);

    // Bad flags are unsupported; bad ranges and segment counts are errors.
    let r = req(RequestType::Discard, 0, range(&m, 0, 1, 1));
    assert_eq!(run(&r, &m, Some(&d)).status, S_UNSUPP);
    let r = req(RequestType::WriteZeroes, 0, range(&m, 0, 1, 2));
    assert_eq!(run(&r, &m, Some(&d)).status, S_UNSUPP);
    for (sector, num) in [
        (SECTORS, 1),
        (SECTORS - 1, 2),
        (u64::MAX, 1),
        (0, MAX_DISCARD_SECTORS + 1),
    ] {
        let r = req(RequestType::Discard, 0, range(&m, sector, num, 0));
        assert_eq!(run(&r, &m, Some(&d)), IOERR, "{sector}+{num}");
    }
    let two = req(RequestType::Discard, 0, vec![seg(0x5000, 32)]);
    assert_eq!(run(&two, &m, Some(&d)), IOERR);
    let short = req(RequestType::Discard, 0, vec![seg(0x5000, 8)]);
    assert_eq!(run(&short, &m, Some(&d)), IOERR);
    assert_eq!(std::fs::read(f.as_path()).unwrap(), data);
}

#[test]
fn guest_buffer_outside_memory_fails_without_panic() {
    // Requests normally come from `parse`, which checks buffers; execution copes anyway.
    let (f, _) = image();
    let d = disk(&f, false, false);
    let m = mem();
    let r = req(
        RequestType::In,
        0,
        vec![seg(0x1000, 512), seg(0x40_0000, 512)],
    );
    let o = run(&r, &m, Some(&d));
    assert_eq!(o.status, S_IOERR);
    let r = req(RequestType::Out, 0, vec![seg(0x40_0000, 512)]);
    assert_eq!(run(&r, &m, Some(&d)), IOERR);
    // data_len larger than the segments: stops at the end of the segments.
    let mut r = req(RequestType::In, 0, vec![seg(0x1000, 512)]);
    r.data_len = 1024;
    assert_eq!(run(&r, &m, Some(&d)).status, S_IOERR);
}
