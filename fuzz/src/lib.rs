//! What the fuzz targets run: each turns the fuzzer's bytes into one of stratovirt's outside
//! inputs, feeds it to the real entry point and checks the invariants that must hold for any
//! input (no panic, and the properties below).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use qmp::block::{BlockdevAddArguments, DeviceAddArguments};
use qmp::protocol::{Frame, Framer};
use qmp::{CpuInfo, CpuInstanceProperties, HotpluggableCpu, QmpError, RunState, StatusInfo};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueOwnedT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

/// The command line: arguments separated by NUL bytes.
pub fn cmdline(data: &[u8]) {
    let args: Vec<String> = data
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // `-config FILE` reads FILE: its contents are the json_config target's job, and a fuzzer
    // naming /dev/zero or a FIFO would only make this target hang.
    if args.iter().any(|a| a.contains("config")) {
        return;
    }
    if let Ok(config::Action::Run(cfg)) = config::parse_args(&args) {
        // What the parser accepted is a valid configuration.
        if let Err(e) = cfg.validate() {
            panic!("parse_args accepted {args:?} but validate refuses it: {e}");
        }
    }
}

/// A `-config` JSON file.
pub fn json_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = config::parse_json_config(text) {
        if let Err(e) = cfg.validate() {
            panic!("parse_json_config accepted {text:?} but validate refuses it: {e}");
        }
    }
}

/// A machine that accepts or refuses requests depending on their arguments, so that both
/// paths of every handler run.
#[derive(Default)]
struct MockVm {
    paused: AtomicU32,
}

fn refuse_odd(s: &str) -> Result<(), QmpError> {
    if s.len() % 2 == 1 {
        Err(QmpError::generic(format!("refused {s}")))
    } else {
        Ok(())
    }
}

impl qmp::VmControl for MockVm {
    fn query_status(&self) -> StatusInfo {
        StatusInfo::new(if self.paused.load(Ordering::Relaxed) == 1 {
            RunState::Paused
        } else {
            RunState::Running
        })
    }
    fn stop(&self) -> Result<(), QmpError> {
        match self.paused.swap(1, Ordering::Relaxed) {
            0 => Ok(()),
            _ => Err(QmpError::generic("already paused")),
        }
    }
    fn cont(&self) -> Result<(), QmpError> {
        self.paused.store(0, Ordering::Relaxed);
        Ok(())
    }
    fn query_cpus(&self) -> Vec<CpuInfo> {
        (0..2)
            .map(|i| {
                let props = CpuInstanceProperties {
                    core_id: 0,
                    socket_id: i,
                    thread_id: 0,
                };
                CpuInfo::new(i, props, i == 1, 1000 + i64::from(i))
            })
            .collect()
    }
    fn query_hotpluggable_cpus(&self) -> Vec<HotpluggableCpu> {
        (0..2)
            .map(|i| {
                let props = CpuInstanceProperties {
                    core_id: 0,
                    socket_id: i,
                    thread_id: 0,
                };
                HotpluggableCpu::new(i, props, true)
            })
            .collect()
    }
    fn quit(&self) {}
    fn blockdev_add(&self, args: &BlockdevAddArguments) -> Result<(), QmpError> {
        refuse_odd(&args.node_name)
    }
    fn blockdev_del(&self, node_name: &str) -> Result<(), QmpError> {
        refuse_odd(node_name)
    }
    fn device_add(&self, args: &DeviceAddArguments) -> Result<(), QmpError> {
        refuse_odd(&args.id)
    }
    fn device_del(&self, id: &str) -> Result<(), QmpError> {
        refuse_odd(id)
    }
}

/// Every reply is one JSON object with either `return` or `error` (and maybe `id`).
fn check_reply(reply: &str) {
    let v: serde_json::Value =
        serde_json::from_str(reply).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {reply}"));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("reply is not an object: {reply}"));
    assert!(
        o.contains_key("return") != o.contains_key("error"),
        "reply has neither or both of return/error: {reply}"
    );
    assert!(
        o.keys()
            .all(|k| ["return", "error", "id"].contains(&k.as_str())),
        "unexpected key in {reply}"
    );
    assert!(!reply.contains('\n'), "a reply is one line: {reply:?}");
}

/// A QMP client's byte stream: the first byte sets the size of the reads the server gets,
/// the rest goes through the server's framer and the dispatcher.
pub fn qmp(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let vm = Arc::new(MockVm::default());
    let dispatcher = qmp::Dispatcher::new(vm, qmp::EventBus::new());
    let mut framer = Framer::new(4096);
    let handle = |frame: Frame| {
        if let Frame::Line(line) = frame {
            for outcome in dispatcher.handle_line(&line) {
                check_reply(&outcome.response);
            }
        }
    };
    for piece in stream.chunks(usize::from(chunk).max(1)) {
        framer.push(piece);
        while let Some(frame) = framer.next_frame() {
            handle(frame);
        }
    }
    while let Some(frame) = framer.finish() {
        handle(frame);
    }
}

/// Guest memory as the unit tests have it: [0, 1 MiB) and [2 MiB, 3 MiB), a hole between.
fn guest_memory() -> &'static GuestMemoryMmap {
    static MEM: OnceLock<GuestMemoryMmap> = OnceLock::new();
    MEM.get_or_init(|| {
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x10_0000),
            (GuestAddress(0x20_0000), 0x10_0000),
        ])
        .unwrap()
    })
}

const BLK_QUEUE_SIZE: u16 = 16;
const DESC_BYTES: usize = 16 * BLK_QUEUE_SIZE as usize;
/// Where the rest of the input lands in guest memory (headers, indirect tables, data).
const BLOB: u64 = 0x1_0000;
const BLOB_MAX: usize = 0x1_0000;

/// One virtio-blk request: byte 0 is the head index; then 16 descriptors (addr, len, flags,
/// next; an address with its top bit clear is folded into the first 4 MiB so that it often
/// lands in guest memory); the rest is written at BLOB. The worker's path: the queue's
/// descriptor chain (next, indirect, loops) into `parse`.
pub fn blk_request(data: &[u8]) {
    let mem = guest_memory();
    // Same memory for every run: clear what the previous one wrote.
    mem.write_slice(&[0u8; 0x1000], GuestAddress(0)).unwrap();
    mem.write_slice(&vec![0u8; BLOB_MAX], GuestAddress(BLOB))
        .unwrap();

    let head = data.first().copied().unwrap_or(0);
    let mut table = [0u8; DESC_BYTES];
    let descs = data.get(1..).unwrap_or(&[]);
    let n = descs.len().min(DESC_BYTES);
    table[..n].copy_from_slice(&descs[..n]);
    for d in table.chunks_mut(16) {
        let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
        if addr >> 63 == 0 {
            d[..8].copy_from_slice(&(addr & 0x3f_ffff).to_le_bytes());
        }
    }
    let blob = descs.get(DESC_BYTES..).unwrap_or(&[]);
    let blob = &blob[..blob.len().min(BLOB_MAX)];

    let q = MockSplitQueue::create(mem, GuestAddress(0), BLK_QUEUE_SIZE);
    mem.write_slice(&table, q.desc_table_addr()).unwrap();
    mem.write_slice(blob, GuestAddress(BLOB)).unwrap();
    // Avail ring: flags 0, idx 1, ring[0] = head.
    let avail = q.avail_addr();
    mem.write_obj(0u16, avail).unwrap();
    mem.write_obj(1u16, avail.unchecked_add(2)).unwrap();
    mem.write_obj(u16::from(head) % BLK_QUEUE_SIZE, avail.unchecked_add(4))
        .unwrap();
    let mut queue: Queue = q.create_queue().unwrap();
    let Some(chain) = queue.iter(mem).ok().and_then(|mut it| it.next()) else {
        return;
    };
    let max = usize::from(devices::virtio::block::QUEUE_SIZE);
    match devices::virtio::block::parse(chain, mem, max) {
        Ok(req) => {
            let mut sum = 0u64;
            for s in &req.data {
                assert!(s.len > 0, "empty segment: {req:?}");
                assert!(
                    mem.check_range(s.addr, s.len as usize, Permissions::ReadWrite),
                    "segment outside memory: {req:?}"
                );
                sum += u64::from(s.len);
            }
            assert_eq!(sum, req.data_len);
            assert!(
                mem.check_range(req.status, 1, Permissions::ReadWrite),
                "{req:?}"
            );
            use devices::virtio::block::RequestType::{In, Out};
            if matches!(req.request_type, In | Out) {
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
