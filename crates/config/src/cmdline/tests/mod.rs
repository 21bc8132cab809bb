//! Command lines from StratoVirt's documentation (the seeds), and every command-line error.

mod devices;
mod options;
mod rules;
mod seeds;

pub(super) use super::*;
pub(super) use crate::json::tests::{seed_004_vm, SEED_004_JSON};
pub(super) use crate::model::*;
use std::io;
pub(super) use std::path::Path;

pub(super) fn nothing_exists(_: &Path, _: crate::validate::Want) -> crate::validate::Occupant {
    crate::validate::Occupant::Nothing
}

/// Only the seed's `/home/config.json` and two variants of it are readable.
pub(super) fn fake_read(path: &Path) -> io::Result<String> {
    match path.to_str() {
        Some("/home/config.json") => Ok(SEED_004_JSON.to_string()),
        Some("/omit.json") => {
            Ok(SEED_004_JSON.replace(r#""omit_vm_memory": false"#, r#""omit_vm_memory": true"#))
        }
        Some("/noserial.json") => {
            let serial = "\"serial\": {\n    \"stdio\": true\n  },";
            assert!(SEED_004_JSON.contains(serial));
            Ok(SEED_004_JSON.replace(serial, ""))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        )),
    }
}

pub(super) const HOST: Host = Host {
    probe: nothing_exists,
    read: fake_read,
};

pub(super) fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

pub(super) fn parse(a: &[&str]) -> Result<Action, String> {
    parse_with(&args(a), &HOST).map_err(|e| e.to_string())
}

pub(super) fn run(a: &[&str]) -> VmConfig {
    match parse(a) {
        Ok(Action::Run(cfg)) => *cfg,
        other => panic!("{a:?}: {other:?}"),
    }
}

pub(super) fn err(a: &[&str]) -> String {
    match parse(a) {
        Err(e) => {
            assert!(!e.contains('\n'), "{e}");
            e
        }
        Ok(other) => panic!("{a:?} parsed: {other:?}"),
    }
}

/// A valid command line with `extra` appended.
pub(super) fn run_k(extra: &[&str]) -> VmConfig {
    let mut a = vec!["-kernel", "/k"];
    a.extend_from_slice(extra);
    run(&a)
}

pub(super) fn err_k(extra: &[&str]) -> String {
    let mut a = vec!["-kernel", "/k"];
    a.extend_from_slice(extra);
    err(&a)
}

pub(super) fn vm(kernel: &str, cmdline: &str) -> VmConfig {
    VmConfig {
        name: DEFAULT_VM_NAME.into(),
        machine: MachineConfig {
            kind: MachineType::Microvm,
            vcpus: DEFAULT_VCPUS,
            topology: None,
            mem_size: DEFAULT_MEM_SIZE,
            omit_vm_memory: false,
        },
        boot: BootSource {
            kernel: kernel.into(),
            cmdline: cmdline.into(),
            initrd: None,
        },
        drives: vec![],
        nets: vec![],
        console: None,
        vsock: None,
        balloon: None,
        serial: None,
        qmp: None,
        process: ProcessConfig {
            log_file: None,
            pidfile: None,
            daemonize: false,
            seccomp: true,
        },
        incoming: None,
    }
}

pub(super) fn disk(
    id: &str,
    path: &str,
    read_only: bool,
    direct: bool,
    serial: Option<&str>,
) -> DriveConfig {
    DriveConfig {
        id: id.into(),
        path: path.into(),
        read_only,
        direct,
        serial: serial.map(Into::into),
    }
}

pub(super) const MAC: [u8; 6] = [0x0e, 0x90, 0xdf, 0x9f, 0xa8, 0x88];
