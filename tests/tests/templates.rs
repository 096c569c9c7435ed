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

/// The type a mapped field has (`keyword`, `ip`…), following objects.
fn mapped_type(m: &Value, path: &str) -> Option<String> {
    let mut node = &m["properties"];
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let field = &node[*part];
        if i == parts.len() - 1 || field["type"] == "flattened" {
            return field["type"].as_str().map(str::to_owned);
        }
        node = &field["properties"];
    }
    None
}

/// Field names in a query: in KQL, what stands before `:`; in EQL and ES|QL, identifiers
/// outside strings (the ES|QL source, `FROM … |`, set aside).
fn query_fields(query: &str, language: &str) -> BTreeSet<String> {
    let mut text = String::new();
    let mut in_string = false;
    for c in query.chars() {
        match c {
            '"' => {
                in_string = !in_string;
                text.push(' ');
            }
            _ if in_string => {}
            c => text.push(c),
        }
    }
    if language == "esql" {
        text = text
            .split_once('|')
            .map_or(text.clone(), |(_, rest)| rest.to_owned());
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_alphabetic() || chars[i] == '@' || chars[i] == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "._@*".contains(chars[i]))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let rest = chars[i..].iter().collect::<String>();
            let is_field = match language {
                "kuery" => rest.trim_start().starts_with(':'),
                _ => word.contains('.') && !word.contains('*'),
            };
            if is_field {
                out.insert(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn kibana_objects_detection_rules_sigma_and_dashboard_links_name_mapped_fields() {
    let m = mappings();
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    let mut note = |field: &str, whence: &str| {
        used.insert((field.to_owned(), whence.to_owned()));
    };
    // Saved objects: searches' columns and queries.
    let ndjson =
        std::fs::read_to_string(root().join("deploy/kibana/saved-objects.ndjson")).unwrap();
    let objects: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Every reference names an object of the file, of the right type.
    for o in &objects {
        for r in o["references"].as_array().unwrap() {
            assert!(
                objects
                    .iter()
                    .any(|t| t["id"] == r["id"] && t["type"] == r["type"]),
                "{}: dangling reference {r}",
                o["id"]
            );
        }
    }
    for o in &objects {
        let id = o["id"].as_str().unwrap().to_owned();
        for c in o["attributes"]["columns"].as_array().into_iter().flatten() {
            note(c.as_str().unwrap(), &id);
        }
        if let Some(ss) = o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"].as_str() {
            let ss: Value = serde_json::from_str(ss).unwrap();
            if let Some(q) = ss["query"]["query"].as_str() {
                for f in query_fields(q, "kuery") {
                    note(&f, &id);
                }
            }
        }
    }
    // Detection rules: query, threshold and new-terms fields, and required_fields with
    // their types.
    let mut rules = 0;
    for entry in std::fs::read_dir(root().join("deploy/kibana/detection-rules")).unwrap() {
        let path = entry.unwrap().path();
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let id = r["rule_id"].as_str().unwrap().to_owned();
        let in_query = query_fields(
            r["query"].as_str().unwrap(),
            r["language"].as_str().unwrap(),
        );
        let required: BTreeSet<String> = r["required_fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let name = f["name"].as_str().unwrap();
                assert_eq!(
                    mapped_type(&m, name).as_deref(),
                    f["type"].as_str(),
                    "{id}: required field {name} has another type in the template"
                );
                name.to_owned()
            })
            .collect();
        for f in &in_query {
            assert!(
                required.contains(f),
                "{id}: {f} is queried but not in required_fields"
            );
            note(f, &id);
        }
        let mut extra: Vec<&Value> = Vec::new();
        extra.extend(r["threshold"]["field"].as_array().into_iter().flatten());
        extra.extend(
            r["threshold"]["cardinality"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| &c["field"]),
        );
        extra.extend(r["new_terms_fields"].as_array().into_iter().flatten());
        for f in extra {
            note(f.as_str().unwrap(), &id);
        }
        rules += 1;
    }
    assert_eq!(rules, 12, "detection rules read");
    // Sigma rules: detection keys (without modifiers) and listed fields.
    for entry in std::fs::read_dir(root().join("deploy/kibana/sigma")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut in_detection = false;
        for line in text.lines() {
            let t = line.trim();
            if !line.starts_with(' ') {
                in_detection = line.starts_with("detection:") || line.starts_with("fields:");
                continue;
            }
            if !in_detection {
                continue;
            }
            if let Some(f) = t
                .strip_prefix("- ")
                .filter(|f| f.contains('.') && !f.contains(' '))
            {
                if line.starts_with("  - ") {
                    note(f, &name);
                }
            } else if let Some((k, _)) = t.split_once(':') {
                let k = k.split('|').next().unwrap();
                if k.contains('.') {
                    note(k, &name);
                }
            }
        }
    }
    // Grafana's links to Kibana Discover.
    for entry in std::fs::read_dir(root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (_, rest) in text
            .match_indices("query:'")
            .map(|(i, _)| ((), &text[i + 7..]))
        {
            let encoded = rest.split('\'').next().unwrap();
            let kql = percent_decode(encoded);
            for f in query_fields(&kql, "kuery") {
                note(&f, &path.display().to_string());
            }
        }
    }
    assert!(used.len() > 40, "fields found: {used:?}");
    let unmapped: Vec<_> = used.iter().filter(|(f, _)| !mapped(&m, f)).collect();
    assert!(
        unmapped.is_empty(),
        "fields the index template does not map: {unmapped:?}"
    );
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
