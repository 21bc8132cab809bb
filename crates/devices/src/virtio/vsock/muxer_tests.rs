use super::*;
use crate::virtio::vsock::CONN_BUF;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

const CID: u64 = 3;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sv-vsock-mux-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir(&d).unwrap();
    d
}

fn hdr(op: u16, src_port: u32, dst_port: u32) -> Header {
    Header {
        src_cid: CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        type_: TYPE_STREAM,
        op,
        buf_alloc: 64 * 1024,
        ..Header::default()
    }
}

/// Every packet the muxer has for the guest now, with payloads.
fn drain(m: &mut Muxer) -> Vec<(Header, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; MAX_PAYLOAD];
    while let Some((h, n)) = m.next_for_guest(MAX_PAYLOAD, &mut buf) {
        out.push((h, buf[..n].to_vec()));
        assert!(out.len() < 10_000);
    }
    out
}

/// Tells the muxer what poll says of its descriptors now (a zero timeout).
fn poll(m: &mut Muxer) {
    let mut fds = Vec::new();
    let mut targets = Vec::new();
    m.poll_set(true, &mut fds, &mut targets);
    // SAFETY: `fds` is a valid array of pollfd for the call.
    unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
    for i in (0..targets.len()).rev() {
        if fds[i].revents != 0 {
            m.host_event(targets[i], fds[i].revents);
        }
    }
}

fn ops(p: &[(Header, Vec<u8>)]) -> Vec<u16> {
    p.iter().map(|(h, _)| h.op).collect()
}

/// A guest connection from guest port 5000 to host port 1234, accepted by a host listener.
fn guest_connection(base: &Path) -> (Muxer, UnixStream) {
    let listener = UnixListener::bind(format!("{}_1234", base.display())).unwrap();
    let mut m = Muxer::new(CID, base);
    m.guest_packet(&hdr(op::REQUEST, 5000, 1234), &[]);
    let p = drain(&mut m);
    assert_eq!(ops(&p), [op::RESPONSE]);
    let r = &p[0].0;
    assert_eq!(
        (r.src_cid, r.dst_cid, r.src_port, r.dst_port),
        (HOST_CID, CID, 1234, 5000)
    );
    assert_eq!(r.buf_alloc as usize, CONN_BUF);
    let (s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    (m, s)
}

#[test]
fn a_guest_connection_goes_to_the_port_path_and_carries_bytes_both_ways() {
    let d = dir("guest");
    let base = d.join("v.sock");
    let (mut m, mut s) = guest_connection(&base);
    let mut rw = hdr(op::RW, 5000, 1234);
    rw.len = 5;
    m.guest_packet(&rw, b"hello");
    let mut got = [0u8; 5];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    s.write_all(b"world!").unwrap();
    poll(&mut m);
    let p = drain(&mut m);
    assert_eq!(ops(&p), [op::RW]);
    assert_eq!(p[0].1, b"world!");
    assert_eq!(p[0].0.fwd_cnt, 5, "what reached the host is counted");
    // Nobody listens on port 9: an RST, and the first connection is untouched.
    m.guest_packet(&hdr(op::REQUEST, 5001, 9), &[]);
    let p = drain(&mut m);
    assert_eq!(ops(&p), [op::RST]);
    assert_eq!((p[0].0.src_port, p[0].0.dst_port), (9, 5001));
    assert_eq!(m.len(), 1);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_host_connect_line_reaches_the_guest_and_ok_comes_back() {
    let d = dir("host");
    let mut m = Muxer::new(CID, &d.join("v.sock"));
    let (mut host, ours) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    m.accept_host(OwnedFd::from(ours));
    // The line and the first bytes of the stream in one write: the bytes are the guest's.
    host.write_all(b"CONNECT 52\nearly").unwrap();
    poll(&mut m);
    let p = drain(&mut m);
    assert_eq!(ops(&p), [op::REQUEST]);
    let r = p[0].0;
    assert_eq!(
        (r.src_port, r.dst_port, r.dst_cid),
        (FIRST_LOCAL_PORT, 52, CID)
    );
    let mut resp = hdr(op::RESPONSE, 52, FIRST_LOCAL_PORT);
    resp.buf_alloc = 1 << 20;
    m.guest_packet(&resp, &[]);
    let mut line = [0u8; 14];
    host.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"OK 1073741824\n");
    poll(&mut m);
    let p = drain(&mut m);
    assert_eq!(ops(&p), [op::RW]);
    assert_eq!(p[0].1, b"early");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bad_connect_lines_are_refused() {
    let d = dir("badline");
    let mut m = Muxer::new(CID, &d.join("v.sock"));
    for line in [
        &b"HELLO 5\n"[..],
        b"CONNECT x\n",
        b"CONNECT 99999999999\n",
        &[b'A'; 40],
    ] {
        let (mut host, ours) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        host.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        m.accept_host(OwnedFd::from(ours));
        host.write_all(line).unwrap();
        poll(&mut m);
        assert_eq!(m.len(), 0, "{line:?}");
        let mut b = [0u8; 1];
        // Closed: the end of the stream, or a reset where bytes were left unread.
        assert!(matches!(host.read(&mut b), Ok(0) | Err(_)), "{line:?}");
        assert!(drain(&mut m).is_empty());
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_guest_that_does_not_accept_in_time_is_given_up() {
    let d = dir("timeout");
    let mut m = Muxer::new(CID, &d.join("v.sock"));
    let (mut host, ours) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    m.accept_host(OwnedFd::from(ours));
    host.write_all(b"CONNECT 52\n").unwrap();
    poll(&mut m);
    assert_eq!(ops(&drain(&mut m)), [op::REQUEST]);
    assert!(m.tick(Instant::now()).is_some());
    m.tick(Instant::now() + HANDSHAKE_TIMEOUT + Duration::from_millis(1));
    assert_eq!(
        ops(&drain(&mut m)),
        [op::RST],
        "the guest's half-open socket is reset"
    );
    assert_eq!(m.len(), 0);
    let mut b = [0u8; 1];
    assert_eq!(host.read(&mut b).unwrap(), 0);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn each_violation_resets_its_own_connection_only() {
    let d = dir("violations");
    let base = d.join("v.sock");
    let listener = UnixListener::bind(format!("{}_1234", base.display())).unwrap();
    let mut m = Muxer::new(CID, &base);
    // The bystander: guest port 7000.
    m.guest_packet(&hdr(op::REQUEST, 7000, 1234), &[]);
    let (mut bystander, _) = listener.accept().unwrap();
    bystander
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    drain(&mut m);
    let mut cases: Vec<(&str, Header, usize)> = Vec::new();
    let mut h = hdr(op::RW, 5000, 1234);
    h.src_cid = 9;
    cases.push(("wrong source CID", h, 0));
    let mut h = hdr(op::RW, 5000, 1234);
    h.dst_cid = 7;
    cases.push(("wrong destination CID", h, 0));
    let mut h = hdr(op::RW, 5000, 1234);
    h.type_ = 2;
    cases.push(("seqpacket", h, 0));
    cases.push(("unknown op", hdr(42, 5000, 1234), 0));
    cases.push(("op 0", hdr(op::INVALID, 5000, 1234), 0));
    cases.push(("second request", hdr(op::REQUEST, 5000, 1234), 0));
    cases.push(("response to nothing", hdr(op::RESPONSE, 5000, 1234), 0));
    let mut h = hdr(op::RW, 5000, 1234);
    h.len = (CONN_BUF + 1) as u32;
    cases.push(("past the credit", h, CONN_BUF + 1));
    for (what, bad, len) in cases {
        m.guest_packet(&hdr(op::REQUEST, 5000, 1234), &[]);
        let (mut victim, _) = listener.accept().unwrap();
        victim
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(ops(&drain(&mut m)), [op::RESPONSE], "{what}");
        let payload = vec![7u8; len];
        m.guest_packet(&bad, &payload);
        let p = drain(&mut m);
        assert_eq!(ops(&p), [op::RST], "{what}");
        assert_eq!(
            (p[0].0.src_port, p[0].0.dst_port),
            (bad.dst_port, bad.src_port),
            "{what}"
        );
        let mut b = [0u8; 1];
        assert_eq!(
            victim.read(&mut b).unwrap(),
            0,
            "{what}: the host end is closed"
        );
        assert_eq!(m.len(), 1, "{what}: the bystander stays");
    }
    // The bystander still works.
    let mut rw = hdr(op::RW, 7000, 1234);
    rw.len = 3;
    m.guest_packet(&rw, b"abc");
    let mut got = [0u8; 3];
    bystander.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"abc");
    // Packets for no connection get an RST, an RST gets nothing.
    m.guest_packet(&hdr(op::RW, 1, 2), &[]);
    m.guest_packet(&hdr(op::RST, 1, 2), &[]);
    assert_eq!(ops(&drain(&mut m)), [op::RST]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_guest_never_gets_more_than_its_credit() {
    let d = dir("credit");
    let (mut m, mut s) = guest_connection(&d.join("v.sock"));
    // The guest's REQUEST said 64 KiB of buffer.
    s.write_all(&vec![1u8; 100 * 1024]).unwrap();
    let mut total = 0;
    let mut asked = 0;
    for _ in 0..4 {
        poll(&mut m);
        for (h, data) in drain(&mut m) {
            match h.op {
                op::RW => total += data.len(),
                // Out of credit: the device asks for it, once.
                op::CREDIT_REQUEST => asked += 1,
                other => panic!("op {other}"),
            }
        }
    }
    assert_eq!((total, asked), (64 * 1024, 1));
    // The guest read it all.
    let mut up = hdr(op::CREDIT_UPDATE, 5000, 1234);
    up.fwd_cnt = 64 * 1024;
    m.guest_packet(&up, &[]);
    poll(&mut m);
    let rest: usize = drain(&mut m).iter().map(|(_, d)| d.len()).sum();
    assert_eq!(rest, 36 * 1024);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn credit_updates_follow_what_the_host_read() {
    let d = dir("ourcredit");
    let (mut m, mut s) = guest_connection(&d.join("v.sock"));
    let chunk = vec![3u8; 32 * 1024];
    for _ in 0..2 {
        let mut rw = hdr(op::RW, 5000, 1234);
        rw.len = chunk.len() as u32;
        m.guest_packet(&rw, &chunk);
    }
    let mut got = vec![0u8; 64 * 1024];
    s.read_exact(&mut got).unwrap();
    let p = drain(&mut m);
    assert_eq!(
        ops(&p),
        [op::CREDIT_UPDATE],
        "a quarter of the buffer went to the host"
    );
    assert_eq!(p[0].0.fwd_cnt, 64 * 1024);
    // A credit request is answered at once.
    m.guest_packet(&hdr(op::CREDIT_REQUEST, 5000, 1234), &[]);
    assert_eq!(ops(&drain(&mut m)), [op::CREDIT_UPDATE]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn shutdown_in_each_direction_and_cleanup() {
    let d = dir("shutdown");
    let base = d.join("v.sock");
    let (mut m, mut s) = guest_connection(&base);
    // The guest stops sending: after its bytes, the host reads the end of the stream, and can
    // still send.
    let mut rw = hdr(op::RW, 5000, 1234);
    rw.len = 2;
    m.guest_packet(&rw, b"hi");
    let mut sh = hdr(op::SHUTDOWN, 5000, 1234);
    sh.flags = shutdown::SEND;
    m.guest_packet(&sh, &[]);
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"hi");
    s.write_all(b"reply").unwrap();
    poll(&mut m);
    assert_eq!(drain(&mut m)[0].1, b"reply");
    // The host stops sending: the guest hears SHUTDOWN SEND.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    poll(&mut m);
    let p = drain(&mut m);
    assert_eq!(ops(&p), [op::SHUTDOWN]);
    assert_eq!(p[0].0.flags, shutdown::SEND);
    // The guest closes: RST, and the connection is gone.
    sh.flags = shutdown::BOTH;
    m.guest_packet(&sh, &[]);
    assert_eq!(ops(&drain(&mut m)), [op::RST]);
    assert_eq!(m.len(), 0);
    drop(s);

    // The host closes first: SHUTDOWN with both flags, then the guest's RST ends it.
    let listener2 = UnixListener::bind(format!("{}_77", base.display())).unwrap();
    m.guest_packet(&hdr(op::REQUEST, 6000, 77), &[]);
    drain(&mut m);
    let (s2, _) = listener2.accept().unwrap();
    drop(s2);
    poll(&mut m);
    // It can take no more (hung up), then it sends no more (the end of its stream).
    let p = drain(&mut m);
    assert_eq!(ops(&p), [op::SHUTDOWN, op::SHUTDOWN]);
    assert_eq!(
        (p[0].0.flags, p[1].0.flags),
        (shutdown::RCV, shutdown::BOTH)
    );
    assert_eq!(m.len(), 1);
    m.guest_packet(&hdr(op::RST, 6000, 77), &[]);
    assert_eq!(m.len(), 0);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn connections_are_capped() {
    let d = dir("cap");
    let base = d.join("v.sock");
    let listener = UnixListener::bind(format!("{}_1", base.display())).unwrap();
    let mut m = Muxer::new(CID, &base);
    let mut held = Vec::new();
    for port in 0..MAX_CONNECTIONS as u32 {
        m.guest_packet(&hdr(op::REQUEST, 10_000 + port, 1), &[]);
        held.push(listener.accept().unwrap());
    }
    assert_eq!(m.len(), MAX_CONNECTIONS);
    drain(&mut m);
    m.guest_packet(&hdr(op::REQUEST, 1, 1), &[]);
    assert_eq!(ops(&drain(&mut m)), [op::RST]);
    let (_host, ours) = UnixStream::pair().unwrap();
    m.accept_host(OwnedFd::from(ours));
    assert_eq!(
        m.len(),
        MAX_CONNECTIONS,
        "a host client past the cap is closed"
    );
    m.reset_all();
    assert!(m.is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn connect_lines_parse() {
    assert_eq!(parse_connect(b"CONNECT 1024"), Ok(1024));
    assert_eq!(parse_connect(b"CONNECT 4294967295\r"), Ok(u32::MAX));
    assert!(parse_connect(b"connect 1").is_err());
    assert!(parse_connect(b"CONNECT -1").is_err());
    assert!(parse_connect(b"CONNECT\xff").is_err());
}
