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
