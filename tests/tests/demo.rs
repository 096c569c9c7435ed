//! `meshtrail demo`, the README's first command: it runs the real agent on generated traffic
//! and stops cleanly, and every event it reports is in its events file exactly once; and the
//! README's first command itself, run as written from the repository root.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::HashSet;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshtrail_tests::agent::binary;

/// The count in the demo's closing `N requests written in S s`.
fn requests_written(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.split_once(" requests written").map(|(n, _)| n))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in {stdout}"))
}

#[test]
fn the_demo_runs_the_agent_and_stops_cleanly() {
    let dir = std::env::temp_dir().join(format!("meshtrail-demo-test-{}", std::process::id()));
    let out = Command::new(binary())
        .args(["demo", "--duration", "3", "--rate", "1000", "--dir"])
        .arg(&dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = requests_written(&stdout);
    assert!(written >= 1000, "{stdout}");

    let events = std::fs::read_to_string(dir.join("events.ndjson")).unwrap();
    let docs: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let access: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| d["event"]["dataset"] == "meshtrail.access")
        .collect();
    assert_eq!(access.len() as u64, written, "every request once");
    let ids: HashSet<&str> = docs
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), docs.len(), "no event twice");
    // Every security outcome shows, from all three proxies, named by their pods.
    let outcomes: HashSet<&str> = access
        .iter()
        .map(|d| d["meshtrail"]["security"]["outcome"].as_str().unwrap())
        .collect();
    for o in [
        "ok",
        "mtls_failure",
        "authn_denied",
        "authz_denied",
        "rate_limited",
        "egress_blocked",
        "upstream_failure",
    ] {
        assert!(outcomes.contains(o), "no {o} in {outcomes:?}");
    }
    let gateways: HashSet<&str> = access
        .iter()
        .map(|d| d["meshtrail"]["gateway"].as_str().unwrap())
        .collect();
    assert_eq!(gateways, HashSet::from(["ingress", "egress", "sidecar"]));
    // The summary's outcome counts are the events'.
    let ok = access
        .iter()
        .filter(|d| d["meshtrail"]["security"]["outcome"] == "ok")
        .count();
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ok", &ok.to_string()]),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first command of the README's first `sh` block, without its comment.
fn readme_first_command(root: &Path) -> String {
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split_once("```sh\n")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no ```sh block in README.md"));
    let line = block.lines().next().unwrap();
    line.split_once('#')
        .map_or(line, |(c, _)| c)
        .trim()
        .to_owned()
}

/// What a user types first, verbatim, at the repository root: it must pick the agent's
/// binary, show traffic for a while, stop on Ctrl-C (SIGINT to the terminal's process group)
/// and leave every request it wrote in its events file.
#[test]
fn the_readme_first_command_runs_as_written_from_the_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let command = readme_first_command(&root);
    assert!(command.starts_with("cargo run"), "{command}");
    let demo_dir = root.join("meshtrail-demo");
    let _ = std::fs::remove_dir_all(&demo_dir);
    let out_path =
        std::env::temp_dir().join(format!("meshtrail-readme-{}.out", std::process::id()));
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &command])
        .current_dir(&root)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::piped())
        // Its own process group, as a shell's foreground job: Ctrl-C reaches all of it.
        .process_group(0);
    // A user's shell has none of the variables cargo sets for a test.
    for (k, _) in std::env::vars() {
        if k == "CARGO"
            || [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
            || k == "CARGO_TARGET_TMPDIR"
        {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let pgid = child.id().to_string();
    let interrupt = |sig: &str| {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{pgid}")])
            .status();
    };
    // Up to 15 minutes for cargo to build it (test.sh built it already: then seconds), then
    // 20 s of demo.
    let started = Instant::now();
    let events = demo_dir.join("events.ndjson");
    while !events.exists() {
        if started.elapsed() > Duration::from_secs(900) || child.try_wait().unwrap().is_some() {
            interrupt("-KILL");
            let out = child.wait_with_output().unwrap();
            panic!(
                "the demo did not start: {}\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the demo stopped by itself"
    );
    interrupt("-INT");
    let stopping = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if stopping.elapsed() > Duration::from_secs(60) {
            interrupt("-KILL");
            panic!("the demo did not stop within 60 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    // The wrappers (`sh`, `cargo`) may die of the Ctrl-C as a shell's would; the demo
    // itself must have finished: its summary, then where things are.
    assert!(
        out.status.success() || out.status.signal() == Some(2),
        "{:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let written = requests_written(&stdout);
    // 20 s at the default 500 requests per second.
    assert!(written >= 5000, "{stdout}");
    let text = std::fs::read_to_string(&events).unwrap();
    let mut ids = HashSet::new();
    let mut access = 0u64;
    for line in text.lines() {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            ids.insert(d["event"]["id"].as_str().unwrap().to_owned()),
            "an event twice"
        );
        if d["event"]["dataset"] == "meshtrail.access" {
            access += 1;
        }
    }
    assert_eq!(access, written, "every request once");
    assert!(stdout.contains("events:"), "{stdout}");
    let _ = std::fs::remove_dir_all(&demo_dir);
}
