//! Descriptor passing over the socket: `getfd` names what came with SCM_RIGHTS, `netdev_add`
//! takes it by name, and a name is used once.

mod common;

use common::*;
use serde_json::json;
use std::os::fd::AsRawFd;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

#[test]
fn getfd_then_netdev_add_gets_the_very_descriptor() {
    let server = TestServer::start();
    let mut c = Client::connect_greeted(&server.path);
    assert_eq!(
        c.cmd(r#"{"execute":"qmp_capabilities"}"#),
        json!({"return": {}})
    );
    let (r, _w) = std::io::pipe().unwrap();
    let want = std::fs::read_link(format!("/proc/self/fd/{}", r.as_raw_fd())).unwrap();
    let line = b"{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"tapfd\"}}\n";
    c.stream
        .send_with_fd(&line[..], r.as_raw_fd())
        .expect("sendmsg");
    assert_eq!(c.read_json(), json!({"return": {}}));
    let reply =
        c.cmd(r#"{"execute":"netdev_add","arguments":{"type":"tap","id":"n0","fd":"tapfd"}}"#);
    assert_eq!(reply, json!({"return": {}}));
    let calls = server.vm.calls();
    assert_eq!(
        calls.last().unwrap(),
        &format!("netdev_add n0 {} vhost=false", want.display())
    );
    // Used up: the name is gone, and getfd without a descriptor is refused.
    let reply = c.cmd(r#"{"execute":"netdev_add","arguments":{"id":"n1","fd":"tapfd"}}"#);
    assert_eq!(
        reply["error"]["desc"],
        "fd: file descriptor named 'tapfd' not found (send it with getfd first)"
    );
    let reply = c.cmd(r#"{"execute":"getfd","arguments":{"fdname":"x"}}"#);
    assert_eq!(
        reply["error"]["desc"],
        "No file descriptor supplied via SCM_RIGHTS"
    );
    // The seeds' form takes no descriptor.
    let reply = c.cmd(r#"{"execute":"netdev_add","arguments":{"id":"net-0","ifname":"tap0"}}"#);
    assert_eq!(reply, json!({"return": {}}));
    assert_eq!(
        server.vm.calls().last().unwrap(),
        "netdev_add net-0 tap0 vhost=false"
    );
}

#[test]
fn descriptors_are_per_client() {
    let server = TestServer::start();
    let mut a = Client::connect_greeted(&server.path);
    let mut b = Client::connect_greeted(&server.path);
    let (r, _w) = std::io::pipe().unwrap();
    let line = b"{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"mine\"}}\n";
    a.stream.send_with_fd(&line[..], r.as_raw_fd()).unwrap();
    assert_eq!(a.read_json(), json!({"return": {}}));
    let reply = b.cmd(r#"{"execute":"closefd","arguments":{"fdname":"mine"}}"#);
    assert_eq!(
        reply["error"]["desc"],
        "File descriptor named 'mine' not found"
    );
    assert_eq!(
        a.cmd(r#"{"execute":"closefd","arguments":{"fdname":"mine"}}"#),
        json!({"return": {}})
    );
}
