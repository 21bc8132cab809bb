//! Property tests (proptest) of QMP input handling: a client's byte stream through the
//! server's framer and the dispatcher, as the `qmp` fuzz target (fuzz/) does for hours. For
//! any input: no panic, and every reply is one line of JSON with `return` or `error`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use qmp::block::{BlockdevAddArguments, DeviceAddArguments};
use qmp::protocol::{Frame, Framer};
use qmp::{
    CpuInfo, CpuInstanceProperties, Dispatcher, EventBus, HotpluggableCpu, QmpError, RunState,
    StatusInfo, VmControl,
};
use serde_json::{json, Value};

#[derive(Default)]
struct MockVm {
    paused: AtomicBool,
}

fn props(i: u32) -> CpuInstanceProperties {
    CpuInstanceProperties {
        core_id: 0,
        socket_id: i,
        thread_id: 0,
    }
}

/// Accepts even-length names and refuses odd ones, so both paths run.
fn by_length(s: &str) -> Result<(), QmpError> {
    match s.len() % 2 {
        0 => Ok(()),
        _ => Err(QmpError::generic(format!("refused {s}"))),
    }
}

impl VmControl for MockVm {
    fn query_status(&self) -> StatusInfo {
        StatusInfo::new(if self.paused.load(Ordering::Relaxed) {
            RunState::Paused
        } else {
            RunState::Running
        })
    }
    fn stop(&self) -> Result<(), QmpError> {
        self.paused.store(true, Ordering::Relaxed);
        Ok(())
    }
    fn cont(&self) -> Result<(), QmpError> {
        self.paused.store(false, Ordering::Relaxed);
        Ok(())
    }
    fn query_cpus(&self) -> Vec<CpuInfo> {
        (0..2)
            .map(|i| CpuInfo::new(i, props(i), false, 1000))
            .collect()
    }
    fn query_hotpluggable_cpus(&self) -> Vec<HotpluggableCpu> {
        (0..2)
            .map(|i| HotpluggableCpu::new(i, props(i), true))
            .collect()
    }
    fn quit(&self) {}
    fn blockdev_add(&self, a: &BlockdevAddArguments) -> Result<(), QmpError> {
        by_length(&a.node_name)
    }
    fn blockdev_del(&self, node_name: &str) -> Result<(), QmpError> {
        by_length(node_name)
    }
    fn device_add(&self, a: &DeviceAddArguments) -> Result<(), QmpError> {
        by_length(&a.id)
    }
    fn device_del(&self, id: &str) -> Result<(), QmpError> {
        by_length(id)
    }
}

fn check_reply(reply: &str) {
    let v: Value = serde_json::from_str(reply).unwrap_or_else(|e| panic!("{e}: {reply}"));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {reply}"));
    assert!(
        o.contains_key("return") != o.contains_key("error"),
        "{reply}"
    );
    assert!(
        o.keys()
            .all(|k| ["return", "error", "id"].contains(&k.as_str())),
        "{reply}"
    );
    assert!(!reply.contains('\n'), "{reply:?}");
}

/// Feeds `stream` to a fresh framer and dispatcher in reads of `chunk` bytes.
fn serve(stream: &[u8], chunk: usize) {
    let d = Dispatcher::new(Arc::new(MockVm::default()), EventBus::new());
    let mut framer = Framer::new(4096);
    let handle = |f: Frame| {
        if let Frame::Line(line) = f {
            for o in d.handle_line(&line) {
                check_reply(&o.response);
            }
        }
    };
    for piece in stream.chunks(chunk.max(1)) {
        framer.push(piece);
        while let Some(f) = framer.next_frame() {
            handle(f);
        }
    }
    while let Some(f) = framer.finish() {
        handle(f);
    }
}

const COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-status",
    "query-cpus",
    "query-hotpluggable-cpus",
    "query-version",
    "query-commands",
    "stop",
    "cont",
    "quit",
    "blockdev-add",
    "blockdev-del",
    "device_add",
    "device_del",
    "netdev_add",
    "no-such-command",
];

const ARG_KEYS: &[&str] = &[
    "node-name",
    "file",
    "driver",
    "filename",
    "cache",
    "direct",
    "read-only",
    "id",
    "addr",
    "lun",
    "drive",
    "enable",
    "ifname",
    "value",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(
            &[
                "file",
                "raw",
                "virtio-blk-mmio",
                "0x1",
                "0x9",
                "",
                "drive-0"
            ][..]
        )
        .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(ARG_KEYS), inner, 0..5).prop_map(
                |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
}

fn request() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(COMMANDS),
        prop::option::of(value()),
        prop::option::of(leaf()),
    )
        .prop_map(|(name, args, id)| {
            let mut r = json!({ "execute": name });
            if let Some(a) = args {
                r["arguments"] = a;
            }
            if let Some(id) = id {
                r["id"] = id;
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(stream in prop::collection::vec(any::<u8>(), 0..600), chunk in 1usize..64) {
        serve(&stream, chunk);
    }

    #[test]
    fn requests(reqs in prop::collection::vec(request(), 1..8), newline in any::<bool>(), chunk in 1usize..200) {
        let sep = if newline { "\n" } else { "" };
        let stream: String = reqs.iter().map(|r| format!("{r}{sep}")).collect();
        serve(stream.as_bytes(), chunk);
    }

    #[test]
    fn requests_with_damage(reqs in prop::collection::vec(request(), 1..4),
                            cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut stream: Vec<u8> = reqs.iter().flat_map(|r| format!("{r}\n").into_bytes()).collect();
        for (at, byte) in cuts {
            let i = at.index(stream.len());
            stream[i] = byte;
        }
        serve(&stream, 7);
    }
}
