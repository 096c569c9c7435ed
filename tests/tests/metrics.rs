//! `/metrics`, `/healthz`, `/readyz` of the real binary after it read traffic with a known
//! count of every security outcome; the exposition checked by `promtool check metrics`.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::time::Duration;

use meshtrail_tests::agent::{Agent, http_get};
use meshtrail_tests::node::{Node, security_traffic};
use meshtrail_tests::{eventually, metric_value as value};

/// Label pairs a series must carry.
type Labels<'a> = &'a [(&'a str, &'a str)];

#[test]
fn security_metrics_count_every_outcome() {
    let node = Node::new("metrics");
    security_traffic(&node);
    let agent = Agent::start(&node.config(""));
    let addr = agent.admin_address();
    let mut text = String::new();
    eventually(Duration::from_secs(30), "31 events acknowledged", || {
        text = http_get(&addr, "/metrics").1;
        value(&text, "meshtrail_events_acknowledged_total", &[]) >= 31.0
    });

    let ingress: &[(&str, &str)] = &[
        ("gateway", "ingress"),
        ("namespace", "istio-system"),
        ("workload", "istio-ingressgateway"),
    ];
    let sidecar: &[(&str, &str)] = &[
        ("gateway", "sidecar"),
        ("namespace", "shop"),
        ("workload", "payment"),
    ];
    let cases: &[(&str, Labels, Labels, f64)] = &[
        (
            "meshtrail_requests_total",
            ingress,
            &[("outcome", "ok"), ("code_class", "2xx")],
            5.0,
        ),
        (
            "meshtrail_requests_total",
            ingress,
            &[("outcome", "rate_limited"), ("code_class", "4xx")],
            3.0,
        ),
        (
            "meshtrail_rate_limited_requests_total",
            ingress,
            &[("kind", "local")],
            3.0,
        ),
        (
            "meshtrail_requests_total",
            ingress,
            &[("outcome", "authn_denied")],
            2.0,
        ),
        (
            "meshtrail_authz_denied_requests_total",
            ingress,
            &[("kind", "jwt")],
            2.0,
        ),
        (
            "meshtrail_authz_denied_requests_total",
            sidecar,
            &[
                ("kind", "rbac"),
                ("policy", "ns[shop]-policy[deny-web]-rule[0]"),
                ("direction", "inbound"),
            ],
            4.0,
        ),
        (
            "meshtrail_mtls_requests_total",
            sidecar,
            &[("result", "success"), ("direction", "inbound")],
            10.0,
        ),
        (
            "meshtrail_mtls_requests_total",
            sidecar,
            &[("result", "failure")],
            2.0,
        ),
        (
            "meshtrail_mtls_failures_total",
            sidecar,
            &[("reason", "certificate_verify_failed")],
            2.0,
        ),
        (
            "meshtrail_egress_requests_total",
            sidecar,
            &[("result", "blocked"), ("destination", "pastebin.com")],
            1.0,
        ),
        (
            "meshtrail_egress_requests_total",
            sidecar,
            &[("result", "passthrough"), ("destination", "example.org")],
            3.0,
        ),
        (
            "meshtrail_egress_requests_total",
            &[("gateway", "egress")],
            &[("result", "allowed"), ("destination", "api.stripe.com")],
            2.0,
        ),
        (
            "meshtrail_request_duration_seconds_count",
            sidecar,
            &[],
            16.0,
        ),
        (
            "meshtrail_access_events_total",
            &[],
            &[("format", "istio-1.9")],
            30.0,
        ),
        (
            "meshtrail_mtls_requests_total",
            &[("gateway", "sidecar"), ("workload", "legacy")],
            &[("result", "plaintext"), ("direction", "inbound")],
            2.0,
        ),
        ("meshtrail_container_events_total", &[], &[], 1.0),
        ("meshtrail_lines_read_total", &[], &[], 31.0),
        ("meshtrail_build_info", &[], &[], 1.0),
    ];
    for (metric, base, extra, want) in cases {
        let labels = [*base, *extra].concat();
        assert_eq!(value(&text, metric, &labels), *want, "{metric} {labels:?}");
    }
    assert!(
        !text.contains("/api") && !text.contains("10.1.2.3") && !text.contains("curl"),
        "no path, IP or user agent as a label"
    );

    assert_eq!(http_get(&addr, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(&addr, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(http_get(&addr, "/nope").0, 404);

    // The real Prometheus tool reads the exposition without a complaint.
    meshtrail_tests::promtool_check_metrics(&text);
    assert_eq!(agent.terminate(), 0);
}

/// A Prometheus server from Debian's package, started directly on loopback.
struct Prometheus {
    child: std::process::Child,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    fn start(dir: &std::path::Path, target: &str) -> Prometheus {
        Prometheus::start_with(
            dir,
            &format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: meshtrail\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
    }

    fn start_with(dir: &std::path::Path, config_text: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_text).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/test.sh installs it)");
        let p = Prometheus { child, addr };
        eventually(Duration::from_secs(30), "Prometheus ready", || {
            std::net::TcpStream::connect(&p.addr).is_ok() && http_get(&p.addr, "/-/ready").0 == 200
        });
        p
    }

    /// The answer to an instant query: (status, result).
    fn query_all(&self, promql: &str) -> (String, Vec<serde_json::Value>) {
        let q: String = promql
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"_.-".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (_, body) = http_get(&self.addr, &format!("/api/v1/query?query={q}"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let status = match v["status"].as_str() {
            Some("success") => "success".to_owned(),
            _ => format!("{}: {}", v["errorType"], v["error"]),
        };
        (
            status,
            v["data"]["result"].as_array().cloned().unwrap_or_default(),
        )
    }

    /// The value of an instant PromQL query that returns one sample, if it does.
    fn query(&self, promql: &str) -> Option<f64> {
        let (status, result) = self.query_all(promql);
        assert_eq!(status, "success", "{promql}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }
}

#[test]
fn prometheus_scrapes_the_agent() {
    let node = Node::new("prometheus");
    security_traffic(&node);
    let agent = Agent::start(&node.config(""));
    let target = agent.admin_address();
    let prometheus = Prometheus::start(&node.root, &target);
    let expected = [
        (
            r#"sum(meshtrail_requests_total{gateway="ingress",outcome="ok"})"#,
            5.0,
        ),
        (
            r#"sum(meshtrail_rate_limited_requests_total{kind="local"})"#,
            3.0,
        ),
        (
            r#"sum(meshtrail_authz_denied_requests_total{kind="jwt"})"#,
            2.0,
        ),
        (
            r#"sum(meshtrail_authz_denied_requests_total{kind="rbac",policy="ns[shop]-policy[deny-web]-rule[0]"})"#,
            4.0,
        ),
        (
            r#"sum(meshtrail_mtls_requests_total{gateway="sidecar",result="success"})"#,
            10.0,
        ),
        (
            r#"sum(meshtrail_mtls_failures_total{reason="certificate_verify_failed"})"#,
            2.0,
        ),
        (
            r#"sum(meshtrail_egress_requests_total{result="blocked"})"#,
            1.0,
        ),
        (
            r#"sum(meshtrail_egress_requests_total{result="passthrough"})"#,
            3.0,
        ),
        (
            r#"sum(meshtrail_egress_requests_total{gateway="egress",result="allowed",destination="api.stripe.com"})"#,
            2.0,
        ),
        (r#"sum(meshtrail_request_duration_seconds_count)"#, 30.0),
        (r#"sum(meshtrail_access_events_total)"#, 30.0),
        (r#"meshtrail_events_acknowledged_total"#, 31.0),
        (r#"up{job="meshtrail"}"#, 1.0),
    ];
    for (promql, want) in expected {
        let mut got = None;
        let ok = (0..60).any(|_| {
            got = prometheus.query(promql);
            got == Some(want) || {
                std::thread::sleep(Duration::from_millis(500));
                false
            }
        });
        assert!(ok, "{promql}: Prometheus says {got:?}, expected {want}");
    }

    // Every panel of every dashboard, its variables set to "All", answers without an error;
    // every panel of "Mesh security" and "Gateways" shows the traffic.
    let dashboards = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    for (file, must_show) in [
        ("mesh-security.json", true),
        ("gateways.json", true),
        ("meshtrail-agent.json", false),
    ] {
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dashboards.join(file)).unwrap()).unwrap();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "30s")
                    .replace("$__range", "1h")
                    .replace("$cluster", ".*")
                    .replace("$gateway", ".*")
                    .replace("$namespace", ".*")
                    .replace("$instance", ".*");
                let title = p["title"].as_str().unwrap();
                let mut answer = (String::new(), Vec::new());
                // Panels that need not show anything are asked once.
                let tries = if must_show { 60 } else { 1 };
                let shown = (0..tries).any(|_| {
                    answer = prometheus.query_all(&expr);
                    assert_eq!(answer.0, "success", "{file} \"{title}\": {expr}");
                    !answer.1.is_empty() || {
                        std::thread::sleep(Duration::from_millis(500));
                        false
                    }
                });
                assert!(
                    shown || !must_show,
                    "{file} \"{title}\" shows nothing: {expr}"
                );
            }
        }
    }
    drop(prometheus);
    assert_eq!(agent.terminate(), 0);
}

/// The scrape job Prometheus Operator generates for `deploy/base/servicemonitor.yaml`
/// (its `honorLabels`, path and relabelings, and the operator's own relabelling of every
/// ServiceMonitor target: `namespace`, `service`, `pod`, `container`, `job`, `endpoint`
/// from the Kubernetes metadata), with the metadata a DaemonSet pod in `kube-system`
/// has, given through `static_configs` instead of Kubernetes discovery.
fn operator_scrape_config(target: &str) -> String {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/base/servicemonitor.yaml");
    let sm: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let endpoint = &sm["spec"]["endpoints"][0];
    let honor = endpoint["honorLabels"].as_bool().unwrap_or(false);
    let metrics_path = endpoint["path"].as_str().unwrap_or("/metrics");
    let port = endpoint["port"].as_str().unwrap();
    format!(
        r#"global:
  scrape_interval: 1s
scrape_configs:
  - job_name: serviceMonitor/kube-system/meshtrail/0
    honor_labels: {honor}
    metrics_path: {metrics_path}
    static_configs:
      - targets: ['{target}']
        labels:
          __meta_kubernetes_namespace: kube-system
          __meta_kubernetes_service_name: meshtrail
          __meta_kubernetes_pod_name: meshtrail-x7k2p
          __meta_kubernetes_pod_container_name: meshtrail
          __meta_kubernetes_pod_node_name: node-a
          __meta_kubernetes_endpoint_port_name: {port}
    relabel_configs:
      - source_labels: [__meta_kubernetes_endpoint_port_name]
        regex: {port}
        action: keep
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_service_name]
        target_label: service
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_container_name]
        target_label: container
      - source_labels: [__meta_kubernetes_service_name]
        target_label: job
        replacement: ${{1}}
      - target_label: endpoint
        replacement: {port}
      - source_labels: [__meta_kubernetes_pod_node_name]
        target_label: node
"#
    )
}

/// Scraped as Prometheus Operator scrapes the ServiceMonitor, the agent's own `namespace`
/// (the workload's) survives: without `honorLabels: true` it would become
/// `exported_namespace` and `namespace` would be `kube-system` for every series, merging
/// same-named workloads of different namespaces in the alerts and breaking `$namespace`.
#[test]
fn prometheus_operator_relabelling_keeps_the_workload_namespace() {
    let node = Node::new("operator-scrape");
    security_traffic(&node);
    let agent = Agent::start(&node.config(""));
    let prometheus =
        Prometheus::start_with(&node.root, &operator_scrape_config(&agent.admin_address()));
    let shop = r#"sum(meshtrail_mtls_requests_total{namespace="shop",workload="payment",result="success"})"#;
    let mut got = None;
    let ok = (0..60).any(|_| {
        got = prometheus.query(shop);
        got == Some(10.0) || {
            std::thread::sleep(Duration::from_millis(500));
            false
        }
    });
    assert!(ok, "{shop}: Prometheus says {got:?}, expected 10");
    // Nothing renamed, the job is the Service's name (the alerts' up{job="meshtrail"}),
    // and the node comes from the ServiceMonitor's relabelling.
    let exported = prometheus.query_all(r#"{exported_namespace!=""}"#);
    assert_eq!(exported.0, "success");
    assert!(
        exported.1.is_empty(),
        "renamed series: {:?}",
        exported.1.first()
    );
    assert_eq!(
        prometheus.query(r#"up{job="meshtrail",node="node-a"}"#),
        Some(1.0)
    );
    // No workload series is put in the agent's own namespace.
    assert_eq!(
        prometheus.query(r#"count(meshtrail_mtls_requests_total{namespace="kube-system"})"#),
        None
    );
    drop(prometheus);
    assert_eq!(agent.terminate(), 0);
}
