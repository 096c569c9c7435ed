//! The Elasticsearch test server answers as the documented API does, faults included: the
//! sink's end-to-end tests stand on it.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::io::{Read, Write};
use std::time::Duration;

use meshtrail_tests::es_server::{EsServer, Faults};
use serde_json::Value;

/// One HTTP/1.1 request on a fresh connection: (status, body), or `None` when the server
/// closed the connection without answering.
fn request(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Value)> {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn create(index: &str, id: &str, doc: &str) -> String {
    format!("{{\"create\":{{\"_index\":\"{index}\",\"_id\":\"{id}\"}}}}\n{doc}\n")
}

#[test]
fn create_semantics_and_per_item_results() {
    let es = EsServer::start(None);
    let body = create("logs-meshtrail.access-default", "a", "{\"x\":1}")
        + &create("logs-meshtrail.access-default", "b", "{\"x\":2}");
    let (status, v) = request(
        &es.url,
        "POST",
        "/_bulk",
        &[("Content-Type", "application/x-ndjson")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!((status, v["errors"].as_bool()), (200, Some(false)));
    assert_eq!(v["items"][1]["create"]["status"], 201);
    // The same ids again: 409 each, nothing stored twice.
    let (_, v) = request(&es.url, "POST", "/_bulk", &[], body.as_bytes()).unwrap();
    assert_eq!(v["errors"], true);
    assert_eq!(v["items"][0]["create"]["status"], 409);
    assert_eq!(
        v["items"][0]["create"]["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(es.docs("logs-meshtrail").len(), 2);
    let (_, v) = request(&es.url, "GET", "/logs-meshtrail.*/_count", &[], b"").unwrap();
    assert_eq!(v["count"], 2);
    // `index` into a data stream is refused, as Elasticsearch does.
    let (_, v) = request(
        &es.url,
        "POST",
        "/_bulk",
        &[],
        b"{\"index\":{\"_index\":\"logs-x-y\"}}\n{}\n",
    )
    .unwrap();
    assert_eq!(v["items"][0]["index"]["status"], 400);
}

#[test]
fn gzip_bodies_templates_and_auth() {
    let es = EsServer::start(Some("Basic ZWxhc3RpYzpzZWNyZXQ="));
    let (status, v) = request(&es.url, "GET", "/", &[], b"").unwrap();
    assert_eq!(
        (status, v["error"]["type"].as_str()),
        (401, Some("security_exception"))
    );
    let auth = ("Authorization", "Basic ZWxhc3RpYzpzZWNyZXQ=");
    let (status, v) = request(&es.url, "GET", "/", &[auth], b"").unwrap();
    assert_eq!(
        (status, v["version"]["number"].as_str()),
        (200, Some("8.12.1"))
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(create("logs-a-b", "1", "{}").as_bytes())
        .unwrap();
    let (status, v) = request(
        &es.url,
        "POST",
        "/_bulk",
        &[auth, ("Content-Encoding", "gzip")],
        &gz.finish().unwrap(),
    )
    .unwrap();
    assert_eq!(
        (status, v["items"][0]["create"]["status"].as_u64()),
        (200, Some(201))
    );
    let (status, v) = request(
        &es.url,
        "PUT",
        "/_index_template/meshtrail",
        &[auth],
        b"{\"index_patterns\":[\"x\"]}",
    )
    .unwrap();
    assert_eq!((status, v["acknowledged"].as_bool()), (200, Some(true)));
}

#[test]
fn faults() {
    let es = EsServer::start(None);
    let body = (0..4)
        .map(|i| create("logs-a-b", &i.to_string(), "{\"url\":{\"port\":\"x\"}}"))
        .collect::<String>();
    es.set_faults(Faults {
        reject_all: Some(429),
        ..Faults::default()
    });
    let (status, v) = request(&es.url, "POST", "/_bulk", &[], body.as_bytes()).unwrap();
    assert_eq!(
        (status, v["error"]["type"].as_str()),
        (429, Some("es_rejected_execution_exception"))
    );
    assert!(es.docs("logs").is_empty());
    es.set_faults(Faults {
        item_every: Some((2, 503)),
        ..Faults::default()
    });
    let (_, v) = request(&es.url, "POST", "/_bulk", &[], body.as_bytes()).unwrap();
    let statuses: Vec<u64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["create"]["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 503, 201, 503]);
    es.set_faults(Faults {
        mapping_error_on: Some("\"port\":\"x\"".into()),
        ..Faults::default()
    });
    let (_, v) = request(
        &es.url,
        "POST",
        "/_bulk",
        &[],
        create("logs-a-b", "9", "{\"url\":{\"port\":\"x\"}}").as_bytes(),
    )
    .unwrap();
    assert_eq!(
        v["items"][0]["create"]["error"]["type"],
        "document_parsing_exception"
    );
    es.set_faults(Faults {
        drop_after_store: true,
        ..Faults::default()
    });
    assert!(
        request(
            &es.url,
            "POST",
            "/_bulk",
            &[],
            create("logs-a-b", "10", "{}").as_bytes()
        )
        .is_none(),
        "no answer"
    );
    assert!(es.docs("logs").contains_key("10"), "but stored");
    assert_eq!(
        es.bulk_requests.load(std::sync::atomic::Ordering::Relaxed),
        4
    );
}

#[test]
fn freshness_times_are_read_as_utc_microseconds() {
    // Computed apart: Python's datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=utc).
    assert_eq!(
        meshtrail_tests::es_server::unix_micros("2026-11-24T10:00:00.123456789Z"),
        Some(1_795_514_400_123_456)
    );
    assert_eq!(
        meshtrail_tests::es_server::unix_micros("1970-01-01T00:00:01Z"),
        Some(1_000_000)
    );
    assert_eq!(meshtrail_tests::es_server::unix_micros("yesterday"), None);
}
