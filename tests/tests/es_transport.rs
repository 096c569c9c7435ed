//! How the Elasticsearch sink reaches the cluster, end to end: TLS with a custom CA and a
//! client certificate, a bearer token, an untrusted certificate refused clearly, the
//! explicit opt-out that warns, routing rules, a 30-second outage, and OpenSearch's own
//! policy and field types.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::time::Duration;

use meshtrail_tests::agent::Agent;
use meshtrail_tests::es_server::{EsServer, Faults};
use meshtrail_tests::eventually;
use meshtrail_tests::node::{Node, Writer};
use meshtrail_tests::tls::Pki;

const WAIT: Duration = Duration::from_secs(90);

/// Waits for `n` lines of `writer`, then checks each is stored once.
fn exactly_once(es: &EsServer, prefix: &str, writer: &str, n: u64) {
    eventually(WAIT, &format!("{n} lines of {writer} in {prefix}"), || {
        es.request_ids(prefix)
            .keys()
            .filter(|k| k.starts_with(&format!("seq-{writer}-")))
            .count() as u64
            >= n
    });
    let counts = es.request_ids(prefix);
    let lost = (0..n)
        .filter(|i| !counts.contains_key(&format!("seq-{writer}-{i}")))
        .count();
    let dup = counts.values().filter(|c| **c > 1).count();
    assert_eq!((lost, dup), (0, 0), "lost, duplicated");
}

fn write(node: &Node, pod: &str, name: &str, lines: u64) -> Writer {
    let log = node.container("shop", pod, "istio-proxy");
    let mut w = Writer::new(name, &log);
    for _ in 0..lines {
        w.line();
    }
    w.flush();
    w
}

#[test]
fn tls_with_a_custom_ca_a_client_certificate_and_a_bearer_token() {
    let node = Node::new("es-tls");
    let pki = Pki::new(&node.root.join("pki"));
    let es = EsServer::start_tls(Some("Bearer s3cr3t-token"), pki.server_config(true));
    assert!(es.url.starts_with("https://127.0.0.1:"));
    std::fs::write(node.root.join("token"), "s3cr3t-token\n").unwrap();
    let _w = write(&node, "web-5c9f8d7b6-abcde", "t", 200);
    let extra = format!(
        "  ca_file: {}\n  client_cert_file: {}\n  client_key_file: {}\n  bearer_token_file: {}\n",
        pki.ca.display(),
        pki.client.0.display(),
        pki.client.1.display(),
        node.root.join("token").display()
    );
    let agent = Agent::start(&node.config_es(&es.url, &extra));
    exactly_once(&es, "logs-meshtrail", "t", 200);
    assert!(!agent.log().contains("s3cr3t"), "the token is never logged");
    assert_eq!(agent.terminate(), 0);
}

#[test]
fn an_untrusted_certificate_is_refused_clearly_and_loses_nothing() {
    let node = Node::new("es-untrusted");
    let pki = Pki::new(&node.root.join("pki"));
    let es = EsServer::start_tls(None, pki.server_config(false));
    let _w = write(&node, "web-5c9f8d7b6-abcde", "u", 100);
    // The system's roots do not know the test CA.
    let agent = Agent::start(&node.config_es(&es.url, ""));
    eventually(WAIT, "a certificate error in the log", || {
        let log = agent.log().to_lowercase();
        log.contains("certificate") && log.contains("bulk")
    });
    assert_eq!(agent.terminate(), 0);
    assert!(es.request_ids("logs-meshtrail").is_empty());

    // The explicit opt-out works, and says what it costs.
    let agent = Agent::start(&node.config_es(&es.url, "  tls_insecure_skip_verify: true\n"));
    exactly_once(&es, "logs-meshtrail", "u", 100);
    assert!(agent.log().contains("tls_insecure_skip_verify is on"));
    assert_eq!(agent.terminate(), 0);
}

#[test]
fn routes_send_each_gateway_to_its_own_data_stream() {
    let node = Node::new("es-routes");
    let es = EsServer::start(None);
    let ingress = node.container(
        "istio-system",
        "istio-ingressgateway-7d4f8b6c9-x2x7q",
        "istio-proxy",
    );
    let mut gw = Writer::new("in", &ingress);
    for _ in 0..30 {
        gw.line();
    }
    gw.flush();
    let _s = write(&node, "web-5c9f8d7b6-abcde", "side", 20);
    let extra = "  routes:\n    - gateway: ingress\n      data_stream_namespace: ingress\n    - gateway: egress\n      data_stream_namespace: egress\n";
    let agent = Agent::start(&node.config_es(&es.url, extra));
    exactly_once(&es, "logs-meshtrail.access-ingress", "in", 30);
    exactly_once(&es, "logs-meshtrail.access-default", "side", 20);
    assert!(
        es.request_ids("logs-meshtrail.access-ingress")
            .keys()
            .all(|k| k.starts_with("seq-in-"))
    );
    assert!(
        es.request_ids("logs-meshtrail.access-default")
            .keys()
            .all(|k| k.starts_with("seq-side-"))
    );
    assert_eq!(agent.terminate(), 0);
}

#[test]
fn elasticsearch_down_for_30_seconds_then_back() {
    let node = Node::new("es-outage");
    let es = EsServer::start(None);
    let mut w = write(&node, "web-5c9f8d7b6-abcde", "o", 500);
    let agent = Agent::start(&node.config_es(&es.url, "  max_batch_docs: 200\n"));
    exactly_once(&es, "logs-meshtrail", "o", 500);
    es.set_faults(Faults {
        down: true,
        ..Faults::default()
    });
    // Lines keep coming during the outage.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        for _ in 0..50 {
            w.line();
        }
        w.flush();
        std::thread::sleep(Duration::from_millis(250));
    }
    let during = w.written;
    assert!(
        es.request_ids("logs-meshtrail").len() as u64 <= 500 + 200,
        "nothing lands while it is down, but a request already in flight"
    );
    es.set_faults(Faults::default());
    exactly_once(&es, "logs-meshtrail", "o", during);
    assert_eq!(agent.terminate(), 0);
}

#[test]
fn opensearch_gets_its_own_policy_and_types_and_every_line() {
    let es = EsServer::start_opensearch();
    // The Elasticsearch set-up is refused as OpenSearch refuses it: the server can tell.
    let node = Node::new("es-opensearch-wrong");
    let _w = write(&node, "web-5c9f8d7b6-abcde", "e", 50);
    let agent = Agent::start(&node.config_es(&es.url, ""));
    exactly_once(&es, "logs-meshtrail", "e", 50);
    let log = agent.log();
    assert_eq!(agent.terminate(), 0);
    assert!(
        log.contains("template install refused") && log.contains("/_ilm/policy/meshtrail"),
        "{log}"
    );
    assert!(
        !es.installed()
            .contains(&"/_component_template/meshtrail-mappings".to_owned()),
        "flattened is not an OpenSearch type"
    );

    let node = Node::new("es-opensearch");
    let _w = write(&node, "web-5c9f8d7b6-abcde", "o", 200);
    let agent = Agent::start(&node.config_es(&es.url, "  distribution: opensearch\n"));
    exactly_once(&es, "logs-meshtrail", "o", 200);
    let log = agent.log();
    assert_eq!(agent.terminate(), 0);
    assert!(!log.contains("refused"), "{log}");
    let installed = es.installed();
    for path in [
        "/_plugins/_ism/policies/meshtrail",
        "/_component_template/meshtrail-mappings",
        "/_component_template/meshtrail-settings",
        "/_index_template/meshtrail",
    ] {
        assert!(
            installed.contains(&path.to_owned()),
            "{path} in {installed:?}"
        );
    }
}
