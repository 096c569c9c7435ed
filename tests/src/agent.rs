//! The real `meshtrail` binary, started and stopped the ways a node does it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The release binary, built once if it is not there (`scripts/test.sh` builds it first).
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("MESHTRAIL_BIN") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--quiet", "-p", "meshtrail"])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building meshtrail");
        root.join("target/release/meshtrail")
    })
}

/// A running agent; killed with SIGKILL when dropped.
pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    /// Starts `meshtrail run --config <config>`, logging to `<config dir>/agent-<n>.log`.
    pub fn start(config: &Path) -> Agent {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = config.with_file_name(format!("agent-{n}.log"));
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .env("MESHTRAIL_LOG", "info")
            // Tests never reach a real cluster, even when they run inside one.
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting meshtrail");
        Agent {
            child: Some(child),
            log,
        }
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit; returns the exit code.
    pub fn terminate(mut self) -> i32 {
        let mut c = self.child.take().unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM");
        let status = c.wait().unwrap();
        status.code().unwrap_or(-1)
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn hup(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(sent.success(), "kill -HUP");
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The address of the agent's admin listener, from its log (waits up to 10 s).
    pub fn admin_address(&self) -> String {
        let mut found = None;
        crate::eventually(
            std::time::Duration::from_secs(10),
            "the admin listener",
            || {
                found = self
                    .log()
                    .lines()
                    .find(|l| l.contains("serving /metrics"))
                    .and_then(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).ok()?;
                        v["address"].as_str().map(str::to_owned)
                    });
                found.is_some()
            },
        );
        found.unwrap()
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET path` from `addr` (host:port on loopback), as (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
