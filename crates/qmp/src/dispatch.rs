//! Command dispatch: name → typed handler.
//!
//! A command is one function taking the [`Context`] and its typed argument
//! struct and returning its typed reply; `Dispatcher::register` wraps it
//! with argument parsing (QEMU-worded errors, rejected before the handler
//! runs) and reply serialisation. Add a command by writing the handler and
//! one `register` line in [`Dispatcher::new`].

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::args::parse_arguments;
use crate::error::QmpError;
use crate::events::EventBus;
use crate::net::ClientFds;
use crate::protocol::{
    error_response, line_too_long_error, parse_line, return_response, Frame, Request,
};
use crate::schema::{
    CommandInfo, CpuInfo, Empty, HotpluggableCpu, NoArguments, QmpCapabilitiesArguments, RunState,
    StatusInfo, VersionInfo,
};

/// What the machine provides to the QMP commands.
///
/// Later commands are added as methods with a default body returning
/// [`QmpError::not_supported`], so existing implementations keep compiling.
pub trait VmControl: Send + Sync {
    /// Current run state (`query-status`).
    fn query_status(&self) -> StatusInfo;
    /// Pause all vCPUs. The dispatcher emits `STOP` after it succeeds.
    fn stop(&self) -> Result<(), QmpError>;
    /// Resume all vCPUs. The dispatcher emits `RESUME` after it succeeds.
    fn cont(&self) -> Result<(), QmpError>;
    /// One entry per vCPU (`query-cpus`).
    fn query_cpus(&self) -> Vec<CpuInfo>;
    /// One entry per possible vCPU (`query-hotpluggable-cpus`).
    fn query_hotpluggable_cpus(&self) -> Vec<HotpluggableCpu>;
    /// Called by the server after `quit`'s `{"return":{}}` was written to the
    /// client: the machine emits `SHUTDOWN`
    /// (`{"guest":false,"reason":"host-qmp-quit"}`), flushes the
    /// [`EventBus`], removes the socket and exits the process.
    fn quit(&self);
    /// `blockdev-add`: open an image under a node name.
    fn blockdev_add(&self, _args: &crate::block::BlockdevAddArguments) -> Result<(), QmpError> {
        Err(QmpError::not_supported("blockdev-add"))
    }
    /// `blockdev-del`: drop a node that was never attached.
    fn blockdev_del(&self, _node_name: &str) -> Result<(), QmpError> {
        Err(QmpError::not_supported("blockdev-del"))
    }
    /// `device_add`: attach a device (a disk into its slot).
    fn device_add(&self, _args: &crate::block::DeviceAddArguments) -> Result<(), QmpError> {
        Err(QmpError::not_supported("device_add"))
    }
    /// `device_del`: detach device `id`; the dispatcher then emits `DEVICE_DELETED`.
    fn device_del(&self, _id: &str) -> Result<(), QmpError> {
        Err(QmpError::not_supported("device_del"))
    }
    /// `netdev_add`: open a NIC backend (a TAP) under an id, for `device_add`.
    fn netdev_add(&self, _spec: crate::net::NetdevSpec) -> Result<(), QmpError> {
        Err(QmpError::not_supported("netdev_add"))
    }
    /// `netdev_del`: close a NIC backend that is not plugged in.
    fn netdev_del(&self, _id: &str) -> Result<(), QmpError> {
        Err(QmpError::not_supported("netdev_del"))
    }
    /// `migrate`: start writing a snapshot to a `file:` URI (pausing a running VM first).
    fn migrate(&self, _uri: &str) -> Result<crate::migration::MigrateStarted, QmpError> {
        Err(QmpError::not_supported("migrate"))
    }
    /// `query-migrate`: where the last `migrate` (or the restore) stands.
    fn query_migrate(&self) -> crate::migration::MigrationInfo {
        crate::migration::MigrationInfo::new(crate::migration::MigrationStatus::None)
    }
    /// `balloon`: set the guest's memory to `value` bytes (checked by the machine).
    fn balloon(&self, _value: i64) -> Result<(), QmpError> {
        Err(QmpError::device_not_active("balloon"))
    }
    /// `query-balloon`: the guest's memory as its balloon driver reports it.
    fn query_balloon(&self) -> Result<crate::balloon::BalloonInfo, QmpError> {
        Err(QmpError::device_not_active("balloon"))
    }
    /// `query-balloon-stats`: the guest's memory statistics.
    fn query_balloon_stats(&self) -> Result<crate::balloon::GuestStatsInfo, QmpError> {
        Err(QmpError::device_not_active("balloon"))
    }
}

/// What a handler can use.
pub struct Context<'a> {
    /// The machine.
    pub vm: &'a dyn VmControl,
    /// The event bus.
    pub events: &'a EventBus,
    commands: &'a [&'static str],
    quit: Cell<bool>,
    /// The descriptors the client sent and named.
    fds: &'a RefCell<ClientFds>,
}

impl Context<'_> {
    /// Ask the server to call [`VmControl::quit`] once the reply is written.
    pub fn request_quit(&self) {
        self.quit.set(true);
    }

    /// Runs `f` on the client's descriptors.
    pub fn with_fds<R>(&self, f: impl FnOnce(&mut ClientFds) -> R) -> R {
        f(&mut self.fds.borrow_mut())
    }
}

/// The reply to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The JSON reply, without line terminator.
    pub response: String,
    /// After writing the reply, call [`VmControl::quit`].
    pub quit: bool,
}

impl Outcome {
    fn error(error: &QmpError, id: Option<&Value>) -> Self {
        Outcome {
            response: error_response(error, id),
            quit: false,
        }
    }
}

type Handler = Box<
    dyn Fn(&Context<'_>, &Map<String, Value>, Option<&Value>) -> Result<String, QmpError>
        + Send
        + Sync,
>;

struct Command {
    name: &'static str,
    handler: Handler,
}

/// Maps command names to handlers.
pub struct Dispatcher {
    vm: Arc<dyn VmControl>,
    events: EventBus,
    commands: Vec<Command>,
    names: Vec<&'static str>,
}

impl Dispatcher {
    /// A dispatcher with every implemented command.
    pub fn new(vm: Arc<dyn VmControl>, events: EventBus) -> Self {
        let mut d = Dispatcher {
            vm,
            events,
            commands: Vec::new(),
            names: Vec::new(),
        };
        d.register("qmp_capabilities", qmp_capabilities);
        d.register("quit", quit);
        d.register("stop", stop);
        d.register("cont", cont);
        d.register("query-status", query_status);
        d.register("query-cpus", query_cpus);
        d.register("query-hotpluggable-cpus", query_hotpluggable_cpus);
        d.register("query-version", query_version);
        d.register("query-commands", query_commands);
        crate::block::register(&mut d);
        crate::net::register(&mut d);
        crate::migration::register(&mut d);
        crate::balloon::register(&mut d);
        d
    }

    /// Register a typed handler: `A` is parsed from `arguments` (errors are
    /// replied without calling the handler), `R` is serialised as `return`.
    pub(crate) fn register<A, R, F>(&mut self, name: &'static str, f: F)
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&Context<'_>, A) -> Result<R, QmpError> + Send + Sync + 'static,
    {
        debug_assert!(!self.names.contains(&name), "{name} registered twice");
        let handler: Handler = Box::new(move |cx, args, id| {
            let args: A = parse_arguments(args)?;
            let ret = f(cx, args)?;
            return_response(&ret, id)
                .map_err(|e| QmpError::generic(format!("Failed to serialise the reply: {e}")))
        });
        self.commands.push(Command { name, handler });
        self.names.push(name);
    }

    /// Names of all implemented commands, in registration order.
    pub fn command_names(&self) -> &[&'static str] {
        &self.names
    }

    /// Run one parsed request from a client that has passed no descriptors.
    pub fn dispatch(&self, req: &Request) -> Outcome {
        self.dispatch_with(req, &RefCell::default())
    }

    /// Run one parsed request; `fds` are the descriptors its client sent and named.
    pub fn dispatch_with(&self, req: &Request, fds: &RefCell<ClientFds>) -> Outcome {
        let id = req.id.as_ref();
        let Some(cmd) = self.commands.iter().find(|c| c.name == req.execute) else {
            return Outcome::error(&QmpError::command_not_found(&req.execute), id);
        };
        let cx = Context {
            vm: self.vm.as_ref(),
            events: &self.events,
            commands: &self.names,
            quit: Cell::new(false),
            fds,
        };
        log::debug!("QMP command {}", req.execute);
        match (cmd.handler)(&cx, &req.arguments, id) {
            Ok(response) => Outcome {
                response,
                quit: cx.quit.get(),
            },
            Err(e) => {
                log::debug!("QMP command {} failed: {}", req.execute, e.desc);
                Outcome::error(&e, id)
            }
        }
    }

    /// Reply to one framed input unit (a line, or a too-long marker).
    pub fn handle_frame(&self, frame: &Frame) -> Vec<Outcome> {
        match frame {
            Frame::TooLong => vec![Outcome::error(&line_too_long_error(), None)],
            Frame::Line(line) => self.handle_line(line),
        }
    }

    /// Parse and run every request on one input line.
    pub fn handle_line(&self, line: &[u8]) -> Vec<Outcome> {
        parse_line(line)
            .into_iter()
            .map(|r| match r {
                Ok(req) => self.dispatch(&req),
                Err(e) => Outcome::error(&e.error, e.id.as_ref()),
            })
            .collect()
    }
}

fn qmp_capabilities(_cx: &Context<'_>, args: QmpCapabilitiesArguments) -> Result<Empty, QmpError> {
    if let Some(cap) = args.enable.iter().flatten().next() {
        return Err(QmpError::generic(format!(
            "Capability '{cap}' not available"
        )));
    }
    Ok(Empty {})
}

fn quit(cx: &Context<'_>, _: NoArguments) -> Result<Empty, QmpError> {
    cx.request_quit();
    Ok(Empty {})
}

fn stop(cx: &Context<'_>, _: NoArguments) -> Result<Empty, QmpError> {
    if cx.vm.query_status().status == RunState::Paused {
        return Err(QmpError::generic("The VM is already paused"));
    }
    cx.vm.stop()?;
    cx.events.emit("STOP", json!({}));
    Ok(Empty {})
}

fn cont(cx: &Context<'_>, _: NoArguments) -> Result<Empty, QmpError> {
    if cx.vm.query_status().status == RunState::Running {
        return Err(QmpError::generic("The VM is already running"));
    }
    cx.vm.cont()?;
    cx.events.emit("RESUME", json!({}));
    Ok(Empty {})
}

fn query_status(cx: &Context<'_>, _: NoArguments) -> Result<StatusInfo, QmpError> {
    Ok(cx.vm.query_status())
}

fn query_cpus(cx: &Context<'_>, _: NoArguments) -> Result<Vec<CpuInfo>, QmpError> {
    Ok(cx.vm.query_cpus())
}

fn query_hotpluggable_cpus(
    cx: &Context<'_>,
    _: NoArguments,
) -> Result<Vec<HotpluggableCpu>, QmpError> {
    Ok(cx.vm.query_hotpluggable_cpus())
}

fn query_version(_cx: &Context<'_>, _: NoArguments) -> Result<VersionInfo, QmpError> {
    Ok(VersionInfo::current())
}

fn query_commands(cx: &Context<'_>, _: NoArguments) -> Result<Vec<CommandInfo>, QmpError> {
    Ok(cx
        .commands
        .iter()
        .map(|name| CommandInfo {
            name: (*name).to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CpuInstanceProperties;
    use serde::Deserialize;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MockVm {
        paused: Mutex<bool>,
        calls: Mutex<Vec<&'static str>>,
    }

    impl MockVm {
        fn calls(&self) -> Vec<&'static str> {
            self.calls.lock().unwrap().clone()
        }
        fn record(&self, c: &'static str) {
            self.calls.lock().unwrap().push(c);
        }
    }

    impl VmControl for MockVm {
        fn query_status(&self) -> StatusInfo {
            StatusInfo::new(if *self.paused.lock().unwrap() {
                RunState::Paused
            } else {
                RunState::Running
            })
        }
        fn stop(&self) -> Result<(), QmpError> {
            self.record("stop");
            *self.paused.lock().unwrap() = true;
            Ok(())
        }
        fn cont(&self) -> Result<(), QmpError> {
            self.record("cont");
            *self.paused.lock().unwrap() = false;
            Ok(())
        }
        fn query_cpus(&self) -> Vec<CpuInfo> {
            (0..2)
                .map(|i| {
                    CpuInfo::new(
                        i,
                        CpuInstanceProperties {
                            core_id: 0,
                            socket_id: i,
                            thread_id: 0,
                        },
                        false,
                        1000 + i as i64,
                    )
                })
                .collect()
        }
        fn query_hotpluggable_cpus(&self) -> Vec<HotpluggableCpu> {
            vec![]
        }
        fn quit(&self) {
            self.record("quit");
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct EchoArgs {
        node_name: String,
        #[serde(default)]
        value: Option<u64>,
    }

    fn setup() -> (Arc<MockVm>, EventBus, Dispatcher) {
        let vm = Arc::new(MockVm::default());
        let bus = EventBus::new();
        let mut d = Dispatcher::new(vm.clone(), bus.clone());
        d.register("x-test-echo", |cx: &Context<'_>, a: EchoArgs| {
            cx.vm.stop()?;
            Ok(json!({"node-name": a.node_name, "value": a.value}))
        });
        d.register("x-test-not-found", |_: &Context<'_>, _: NoArguments| {
            Err::<Empty, _>(QmpError::device_not_found("drive-9"))
        });
        d.register("x-test-not-active", |_: &Context<'_>, _: NoArguments| {
            Err::<Empty, _>(QmpError::device_not_active("balloon"))
        });
        (vm, bus, d)
    }

    fn run(d: &Dispatcher, line: &str) -> Value {
        let out = d.handle_line(line.as_bytes());
        assert_eq!(out.len(), 1, "{line}");
        serde_json::from_str(&out[0].response).unwrap()
    }

    fn error_of(v: &Value) -> (String, String) {
        (
            v["error"]["class"].as_str().unwrap().to_string(),
            v["error"]["desc"].as_str().unwrap().to_string(),
        )
    }

    #[test]
    fn capabilities() {
        let (_, _, d) = setup();
        assert_eq!(
            run(&d, r#"{"execute":"qmp_capabilities"}"#),
            json!({"return":{}})
        );
        assert_eq!(
            run(
                &d,
                r#"{"execute":"qmp_capabilities","arguments":{"enable":[]}}"#
            ),
            json!({"return":{}})
        );
        assert_eq!(
            d.handle_line(br#"{"execute":"qmp_capabilities","arguments":{}}"#)[0].response,
            r#"{"return":{}}"#
        );
        let v = run(
            &d,
            r#"{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}"#,
        );
        assert_eq!(
            error_of(&v),
            (
                "GenericError".into(),
                "Capability 'oob' not available".into()
            )
        );
        let v = run(
            &d,
            r#"{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}"#,
        );
        assert_eq!(
            error_of(&v).1,
            "Invalid parameter type for 'enable', expected: array"
        );
    }

    #[test]
    fn id_is_echoed_whatever_its_type() {
        let (_, _, d) = setup();
        for id in [
            json!("abc"),
            json!(42),
            json!(-1.5),
            json!({"a": [1, {"b": null}]}),
            json!([1, "x"]),
            json!(null),
            json!(true),
        ] {
            let line = json!({"execute": "query-version", "id": id}).to_string();
            let v = run(&d, &line);
            assert_eq!(v["id"], id);
            assert!(v.as_object().unwrap().contains_key("id"));
            // Errors echo it too.
            let line = json!({"execute": "nope", "id": id}).to_string();
            assert_eq!(run(&d, &line)["id"], id);
            let line = json!({"execute": 3, "id": id}).to_string();
            assert_eq!(run(&d, &line)["id"], id);
        }
        // No id, no id member.
        let out = d.handle_line(br#"{"execute":"query-version"}"#);
        assert_eq!(
            out[0].response,
            r#"{"return":{"qemu":{"micro":1,"minor":0,"major":4},"package":""}}"#
        );
        // The id follows the return, as in QEMU.
        let out = d.handle_line(br#"{"id":"x","execute":"qmp_capabilities"}"#);
        assert_eq!(out[0].response, r#"{"return":{},"id":"x"}"#);
    }

    #[test]
    fn error_classes() {
        let (_, _, d) = setup();
        let out = d.handle_line(br#"{"execute":"foo"}"#);
        assert_eq!(
            out[0].response,
            r#"{"error":{"class":"CommandNotFound","desc":"The command foo has not been found"}}"#
        );
        assert_eq!(
            error_of(&run(&d, r#"{"execute":"x-test-not-found"}"#)),
            ("DeviceNotFound".into(), "Device 'drive-9' not found".into())
        );
        assert_eq!(
            error_of(&run(&d, r#"{"execute":"x-test-not-active"}"#)),
            (
                "DeviceNotActive".into(),
                "No balloon device has been activated".into()
            )
        );
    }

    #[test]
    fn without_a_balloon_its_commands_say_none_is_active() {
        let (vm, _, d) = setup();
        for line in [
            r#"{"execute":"balloon","arguments":{"value":2147483648}}"#,
            r#"{"execute":"query-balloon"}"#,
            r#"{"execute":"query-balloon-stats"}"#,
        ] {
            assert_eq!(
                error_of(&run(&d, line)),
                (
                    "DeviceNotActive".into(),
                    "No balloon device has been activated".into()
                ),
                "{line}"
            );
        }
        assert!(d.command_names().contains(&"balloon"));
        assert!(vm.calls().is_empty());
    }

    #[test]
    fn bad_arguments_are_rejected_before_any_side_effect() {
        let (vm, bus, d) = setup();
        let rx = bus.subscribe();
        let cases = [
            (
                r#"{"execute":"x-test-echo","arguments":{}}"#,
                "Parameter 'node-name' is missing",
            ),
            (
                r#"{"execute":"x-test-echo","arguments":{"node-name":"a","bogus":1}}"#,
                "Parameter 'bogus' is unexpected",
            ),
            (
                r#"{"execute":"x-test-echo","arguments":{"node-name":1}}"#,
                "Invalid parameter type for 'node-name', expected: string",
            ),
            (
                r#"{"execute":"x-test-echo","arguments":{"node-name":"a","value":"1"}}"#,
                "Invalid parameter type for 'value', expected: integer",
            ),
            (
                r#"{"execute":"stop","arguments":{"force":true}}"#,
                "Parameter 'force' is unexpected",
            ),
            (
                r#"{"execute":"quit","arguments":{"now":1}}"#,
                "Parameter 'now' is unexpected",
            ),
            (
                r#"{"execute":"stop","arguments":[]}"#,
                "QMP input member 'arguments' must be an object",
            ),
        ];
        for (line, desc) in cases {
            let out = d.handle_line(line.as_bytes());
            assert_eq!(out.len(), 1);
            assert!(!out[0].quit);
            let v: Value = serde_json::from_str(&out[0].response).unwrap();
            assert_eq!(error_of(&v), ("GenericError".into(), desc.into()), "{line}");
        }
        assert!(vm.calls().is_empty());
        assert!(rx.try_recv().is_err());
        // And the valid call does run.
        let v = run(
            &d,
            r#"{"execute":"x-test-echo","arguments":{"node-name":"a","value":7}}"#,
        );
        assert_eq!(v, json!({"return": {"node-name": "a", "value": 7}}));
        assert_eq!(vm.calls(), vec!["stop"]);
    }

    #[test]
    fn malformed_input() {
        let (vm, _, d) = setup();
        for line in [
            &b"{\"execute\":"[..],
            b"}{",
            b"\xff\xfe\xfd",
            b"{\"execute\":\"\xc3\x28\"}",
        ] {
            let out = d.handle_line(line);
            assert_eq!(out.len(), 1);
            let v: Value = serde_json::from_str(&out[0].response).unwrap();
            let (class, desc) = error_of(&v);
            assert_eq!(class, "GenericError");
            assert!(desc.starts_with("JSON parse error, "), "{desc}");
        }
        for line in ["[]", "\"x\"", "1"] {
            let v = run(&d, line);
            assert_eq!(
                error_of(&v),
                (
                    "GenericError".into(),
                    "QMP input must be a JSON object".into()
                )
            );
        }
        assert_eq!(
            error_of(&run(&d, r#"{"execute":["stop"]}"#)).1,
            "QMP input member 'execute' must be a string"
        );
        assert_eq!(
            error_of(&run(&d, r#"{"arguments":{}}"#)).1,
            "QMP input lacks member 'execute'"
        );
        assert!(d.handle_line(b"").is_empty());
        assert!(d.handle_line(b"   \r").is_empty());
        let out = d.handle_frame(&Frame::TooLong);
        let v: Value = serde_json::from_str(&out[0].response).unwrap();
        assert_eq!(error_of(&v).0, "GenericError");
        assert!(error_of(&v).1.starts_with("JSON parse error"));
        assert!(vm.calls().is_empty());
    }

    #[test]
    fn lifecycle_and_events() {
        let (vm, bus, d) = setup();
        let rx = bus.subscribe();
        assert_eq!(
            run(&d, r#"{"execute":"query-status"}"#),
            json!({"return":{"running":true,"singlestep":false,"status":"running"}})
        );
        let v = run(&d, r#"{"execute":"cont"}"#);
        assert_eq!(error_of(&v).0, "GenericError");
        assert!(rx.try_recv().is_err());

        assert_eq!(run(&d, r#"{"execute":"stop"}"#), json!({"return":{}}));
        let ev: Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(ev["event"], "STOP");
        assert_eq!(ev["data"], json!({}));
        assert_eq!(
            run(&d, r#"{"execute":"query-status"}"#),
            json!({"return":{"running":false,"singlestep":false,"status":"paused"}})
        );
        let v = run(&d, r#"{"execute":"stop"}"#);
        assert_eq!(error_of(&v).0, "GenericError");
        assert!(rx.try_recv().is_err());

        assert_eq!(run(&d, r#"{"execute":"cont"}"#), json!({"return":{}}));
        let ev: Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(ev["event"], "RESUME");
        assert_eq!(vm.calls(), vec!["stop", "cont"]);

        let out = d.handle_line(br#"{"execute":"quit","id":1}"#);
        assert_eq!(out[0].response, r#"{"return":{},"id":1}"#);
        assert!(out[0].quit);
        // The server, not the dispatcher, calls quit after writing the reply.
        assert_eq!(vm.calls(), vec!["stop", "cont"]);
    }

    #[test]
    fn machine_errors_are_passed_through() {
        struct Refusing;
        impl VmControl for Refusing {
            fn query_status(&self) -> StatusInfo {
                StatusInfo::new(RunState::Inmigrate)
            }
            fn stop(&self) -> Result<(), QmpError> {
                Err(QmpError::generic("cannot stop now"))
            }
            fn cont(&self) -> Result<(), QmpError> {
                Err(QmpError::generic("cannot resume now"))
            }
            fn query_cpus(&self) -> Vec<CpuInfo> {
                vec![]
            }
            fn query_hotpluggable_cpus(&self) -> Vec<HotpluggableCpu> {
                vec![]
            }
            fn quit(&self) {}
        }
        let bus = EventBus::new();
        let rx = bus.subscribe();
        let d = Dispatcher::new(Arc::new(Refusing), bus);
        assert_eq!(
            error_of(&run(&d, r#"{"execute":"stop"}"#)).1,
            "cannot stop now"
        );
        assert_eq!(
            error_of(&run(&d, r#"{"execute":"cont"}"#)).1,
            "cannot resume now"
        );
        assert!(rx.try_recv().is_err());
        assert_eq!(run(&d, r#"{"execute":"query-cpus"}"#), json!({"return":[]}));
    }

    #[test]
    fn query_commands_lists_every_command() {
        let vm = Arc::new(MockVm::default());
        let d = Dispatcher::new(vm.clone(), EventBus::new());
        let v = run(&d, r#"{"execute":"query-commands"}"#);
        let names: Vec<&str> = v["return"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        for core in [
            "qmp_capabilities",
            "quit",
            "stop",
            "cont",
            "query-status",
            "query-cpus",
            "query-hotpluggable-cpus",
            "query-version",
            "query-commands",
        ] {
            assert!(names.contains(&core), "{core} missing");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate command names");
        assert_eq!(names, d.command_names());
        for name in names {
            let line = json!({"execute": name}).to_string();
            let out = d.handle_line(line.as_bytes());
            assert!(!out[0].response.contains("CommandNotFound"), "{name}");
        }
    }

    #[test]
    fn query_cpus_shape() {
        let (_, _, d) = setup();
        let out = d.handle_line(br#"{"execute":"query-cpus"}"#);
        let expected_arch = crate::schema::HOST_ARCH;
        assert_eq!(
            out[0].response,
            format!(
                r#"{{"return":[{{"CPU":0,"arch":"{expected_arch}","current":true,"halted":false,"props":{{"core-id":0,"socket-id":0,"thread-id":0}},"qom_path":"/machine/unattached/device[0]","thread_id":1000}},{{"CPU":1,"arch":"{expected_arch}","current":true,"halted":false,"props":{{"core-id":0,"socket-id":1,"thread-id":0}},"qom_path":"/machine/unattached/device[1]","thread_id":1001}}]}}"#
            )
        );
    }
}
