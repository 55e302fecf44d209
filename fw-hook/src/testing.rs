//! Helpers of the unit tests: versions with manifests, hooks, captured output.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fw_core::manifest::{Manifest, MANIFEST_PATH};
use fw_core::Result;

use crate::{run, GivenEnv, HookName, Interrupt, Outcome, Request, Settings};

pub fn manifest(security_version: u64, created: u64) -> Manifest {
    Manifest {
        format: fw_core::manifest::FORMAT,
        name: "sample".into(),
        version: "1".into(),
        security_version,
        created,
        tool: "test".into(),
        gz_length: None,
        entries: Vec::new(),
    }
}

pub fn version(parent: &Path, name: &str, security_version: u64, created: u64) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(dir.join(".fw")).unwrap();
    std::fs::write(
        dir.join(MANIFEST_PATH),
        manifest(security_version, created).to_json(),
    )
    .unwrap();
    dir
}

pub fn hook(dir: &Path, name: HookName, script: &str) -> PathBuf {
    let path = dir.join(name.file_name());
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

pub fn request(version: &Path, name: HookName) -> Request {
    Request {
        name,
        version: version.to_path_buf(),
        target: version.parent().unwrap().to_path_buf(),
        given: GivenEnv::default(),
        settings: Settings {
            timeout: Some(Duration::from_secs(30)),
            retries: 3,
            retry_interval: Duration::from_millis(1),
            signal_mask: None,
        },
    }
}

/// A writer whose bytes the test can read afterwards.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub fn run_captured(req: &Request) -> (Result<Outcome>, String) {
    let out = Captured::default();
    let result = run(req, &Interrupt::new(), Box::new(out.clone()));
    (result, out.text())
}
