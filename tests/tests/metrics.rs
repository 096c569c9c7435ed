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
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: meshtrail\n    static_configs:\n      - targets: ['{target}']\n"),
        )
        .unwrap();
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
