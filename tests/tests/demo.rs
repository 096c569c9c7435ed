//! `meshtrail demo`, the README's first command: it runs the real agent on generated traffic
//! and stops cleanly, and every event it reports is in its events file exactly once.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::HashSet;
use std::process::{Command, Stdio};

use meshtrail_tests::agent::binary;

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
    let written: u64 = stdout
        .lines()
        .find_map(|l| l.split_once(" requests written").map(|(n, _)| n))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in {stdout}"));
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
