//! The ops pack against the product: every metric an alert (or a dashboard) names is one
//! the running agent exports after real traffic, or one listed in
//! `alerts/external-metrics.txt`; the Istio access-log format in `deploy/istio/` is the
//! parser's `meshtrail` format, byte for byte.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshtrail_tests::agent::{Agent, http_get};
use meshtrail_tests::k8s_server::K8sServer;
use meshtrail_tests::node::{Node, security_traffic};
use meshtrail_tests::{eventually, metric_value};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// PromQL keywords that stand where a name could.
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];

/// The metric names a PromQL expression reads: identifiers outside label matchers, ranges
/// and grouping lists that are not a function's name (followed by `(`) or a keyword.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Tokens: identifiers and single punctuation; matchers, ranges and strings dropped.
    let mut tokens: Vec<String> = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' | '[' | '"' => {
                let close = match c {
                    '{' => '}',
                    '[' => ']',
                    _ => '"',
                };
                for d in chars.by_ref() {
                    if d == close {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let mut word = c.to_string();
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                        word.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                tokens.push(word);
            }
            c if c.is_whitespace() => {}
            c => tokens.push(c.to_string()),
        }
    }
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let next = tokens.get(i + 1).map(String::as_str);
        if matches!(
            t,
            "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
        ) {
            // Skip the label list, if any.
            if next == Some("(") {
                while i < tokens.len() && tokens[i] != ")" {
                    i += 1;
                }
            }
        } else if t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && next != Some("(")
            // An aggregation: `sum by (…) (…)`.
            && !matches!(next, Some("by" | "without"))
            && !KEYWORDS.contains(&t)
        {
            names.insert(t.to_owned());
        }
        i += 1;
    }
    names
}

#[test]
fn promql_names_are_found() {
    let names = metric_names(
        r#"sum by (gateway, namespace) (rate(meshtrail_requests_total{outcome="ok"}[5m])) / on (gateway) group_left meshtrail:requests:rate5m > 0.1 and absent(up{job="x"})"#,
    );
    assert_eq!(
        names,
        [
            "meshtrail:requests:rate5m",
            "meshtrail_requests_total",
            "up"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
}

#[test]
fn every_metric_the_alerts_and_dashboards_name_exists() {
    // The agent, with Kubernetes metadata on, after traffic of every security outcome.
    let node = Node::new("ops-metrics");
    let k8s = K8sServer::start("test-node");
    let kubeconfig = node.root.join("kubeconfig");
    std::fs::write(&kubeconfig, k8s.kubeconfig()).unwrap();
    security_traffic(&node);
    let agent = Agent::start(&node.config(&format!(
        "kubernetes:\n  source: api\n  kubeconfig: {}\n  start_jitter_secs: 0\n",
        kubeconfig.display()
    )));
    let mut exposition = String::new();
    eventually(Duration::from_secs(30), "31 events acknowledged", || {
        exposition = http_get(&agent.admin_address(), "/metrics").1;
        metric_value(&exposition, "meshtrail_events_acknowledged_total", &[]) >= 31.0
    });
    agent.kill();
    let exported: BTreeSet<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    assert!(
        exported.contains("meshtrail_mtls_failures_total"),
        "{exported:?}"
    );

    let external: BTreeSet<String> =
        std::fs::read_to_string(root().join("alerts/external-metrics.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split('\t').next().unwrap().to_owned())
            .collect();

    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("alerts/prometheusrule.yaml")).unwrap(),
    )
    .unwrap();
    let mut recorded = BTreeSet::new();
    let mut used = BTreeSet::new();
    for group in rules["spec"]["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            if let Some(r) = rule["record"].as_str() {
                recorded.insert(r.to_owned());
            }
            used.extend(metric_names(rule["expr"].as_str().unwrap()));
        }
    }
    // And the dashboards' queries and variables.
    for entry in std::fs::read_dir(root().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                used.extend(metric_names(t["expr"].as_str().unwrap()));
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if let Some(def) = v["definition"].as_str() {
                // label_values(metric, label)
                let metric = def
                    .trim_start_matches("label_values(")
                    .split(',')
                    .next()
                    .unwrap();
                used.insert(metric.trim().to_owned());
            }
        }
    }
    // A histogram's series are its family's name with a suffix.
    let used: BTreeSet<String> = used
        .into_iter()
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s).filter(|base| exported.contains(*base)))
                .map_or(n.clone(), str::to_owned)
        })
        .collect();
    assert!(used.len() > 25, "names found: {used:?}");
    let unknown: Vec<&String> = used
        .iter()
        .filter(|n| !exported.contains(*n) && !external.contains(*n) && !recorded.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "alerts or dashboards name metrics that the agent does not export and external-metrics.txt does not list: {unknown:?}"
    );
    // Every external metric is used: the list stays the truth.
    let unused: Vec<&String> = external.iter().filter(|n| !used.contains(*n)).collect();
    assert!(
        unused.is_empty(),
        "external-metrics.txt lists unused names: {unused:?}"
    );
}

#[test]
fn the_istio_access_log_format_is_the_parsers() {
    let want = meshtrail_parsers::envoy::builtin::MESHTRAIL.trim_end();
    for file in [
        "deploy/istio/telemetry.yaml",
        "deploy/istio/meshconfig.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("%START_TIME%"))
            .unwrap_or_else(|| panic!("{file}: no format"));
        assert_eq!(line.trim(), want, "{file}");
    }
}
