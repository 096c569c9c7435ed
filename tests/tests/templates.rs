//! The index template maps every field: each one SCHEMA.md names, and each one the agent
//! emits (the public corpus through `meshtrail parse`, and a node's logs through
//! `meshtrail run`). A field left to dynamic mapping is how a label becomes `text` in one
//! index and `keyword` in the next.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use meshtrail_tests::agent::{Agent, binary};
use meshtrail_tests::node::{Node, Writer};
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn mappings() -> Value {
    let text = std::fs::read_to_string(
        root().join("deploy/elasticsearch/component-template-mappings.json"),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["template"]["mappings"].clone()
}

/// True when `path` has an explicit mapping, lies inside a `flattened` field, or is an
/// Envoy operator the `envoy.*` dynamic template covers.
fn mapped(m: &Value, path: &str) -> bool {
    let mut node = &m["properties"];
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let field = &node[*part];
        if field.is_null() {
            return path.starts_with("envoy.") && parts.len() == 2;
        }
        if field["type"] == "flattened" {
            return true;
        }
        if i == parts.len() - 1 {
            return field["type"].is_string();
        }
        node = &field["properties"];
    }
    false
}

fn leaves(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &p, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn every_schema_field_is_mapped() {
    let schema = std::fs::read_to_string(root().join("../shared/SCHEMA.md"))
        .expect("../shared/SCHEMA.md beside the checkout");
    let mut fields = BTreeSet::new();
    for token in schema.split('`').skip(1).step_by(2) {
        let dotted = token.contains('.')
            && !token.contains('*')
            && token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_' || b == b'@');
        if (dotted && !token.starts_with('.'))
            || ["message", "stream", "@timestamp"].contains(&token)
        {
            fields.insert(token.to_owned());
        }
    }
    // Values and object names, not fields.
    for not_field in [
        "meshtrail.access",
        "meshtrail.container",
        "meshtrail.security",
    ] {
        fields.remove(not_field);
    }
    assert!(fields.len() > 80, "SCHEMA.md parsed: {fields:?}");
    let m = mappings();
    let missing: Vec<_> = fields.iter().filter(|f| !mapped(&m, f)).collect();
    assert!(
        missing.is_empty(),
        "SCHEMA.md fields without a mapping: {missing:?}"
    );
}

#[test]
fn every_emitted_field_is_mapped() {
    let mut seen = BTreeSet::new();
    // The public corpus through `meshtrail parse`.
    let corpus = std::fs::read_to_string(root().join("parsers/tests/data/lines.jsonl")).unwrap();
    let input: String = corpus
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["raw"]
                .as_str()
                .unwrap()
                .replace('\n', " ")
                + "\n"
        })
        .collect();
    let mut child = Command::new(binary())
        .args(["parse", "--keep-original"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    // A node's logs through the agent: path metadata, host, file and offset fields.
    let node = Node::new("templates");
    let log = node.container(
        "istio-system",
        "istio-ingressgateway-7d4f8b6c9-x2x7q",
        "istio-proxy",
    );
    let mut w = Writer::new("t", &log);
    for _ in 0..200 {
        w.line();
    }
    w.raw("2026-11-24T10:00:00.000000000Z stderr F an application line\n");
    w.flush();
    let agent = Agent::start(&node.config(""));
    meshtrail_tests::eventually(std::time::Duration::from_secs(30), "201 events", || {
        node.output().lines().count() >= 201
    });
    assert_eq!(agent.terminate(), 0);
    let docs = String::from_utf8(out.stdout).unwrap() + &node.output();
    for line in docs.lines() {
        leaves(&serde_json::from_str(line).unwrap(), "", &mut seen);
    }
    assert!(
        seen.contains("kubernetes.pod.uid")
            && seen.contains("event.original")
            && seen.contains("meshtrail.parse.error"),
        "{seen:?}"
    );
    let m = mappings();
    let missing: Vec<_> = seen.iter().filter(|f| !mapped(&m, f)).collect();
    assert!(
        missing.is_empty(),
        "emitted fields without a mapping: {missing:?}"
    );
}

#[test]
fn templates_are_consistent() {
    let dir = root().join("deploy/elasticsearch");
    let read = |f: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
    };
    let index = read("index-template.json");
    assert_eq!(
        index["composed_of"],
        serde_json::json!(["meshtrail-mappings", "meshtrail-settings"])
    );
    assert_eq!(
        index["index_patterns"],
        serde_json::json!(["logs-meshtrail.*-*"])
    );
    assert!(index["data_stream"].is_object());
    let settings = read("component-template-settings.json");
    let policy = settings["template"]["settings"]["index.lifecycle.name"]
        .as_str()
        .unwrap();
    assert_eq!(policy, "meshtrail");
    let ilm = read("ilm-policy.json");
    assert!(ilm["policy"]["phases"]["hot"]["actions"]["rollover"].is_object());
    assert!(ilm["policy"]["phases"]["delete"]["min_age"].is_string());
}
