//! Random input to the configuration loader: whatever the file holds, loading never panics
//! and a refusal names the file (a syntax error) or the field (a bad value).
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use meshtrail::config::{Config, ConfigError};
use proptest::prelude::*;

/// Every field the loader knows, as `section.key` (or `key` at the top).
const FIELDS: &[&str] = &[
    "node_name",
    "cluster_name",
    "data_dir",
    "shutdown_timeout_secs",
    "tail.include",
    "tail.exclude",
    "tail.framing",
    "tail.start_at",
    "tail.poll_interval_ms",
    "tail.scan_interval_ms",
    "tail.read_block_bytes",
    "tail.max_line_bytes",
    "tail.rotate_wait_secs",
    "pipeline.formats",
    "pipeline.workers",
    "pipeline.max_in_flight_bytes",
    "pipeline.keep_original",
    "sink.type",
    "sink.path",
    "sink.url",
    "sink.namespace",
    "sink.logstash_prefix",
    "sink.gzip",
    "sink.max_batch_bytes",
    "sink.max_batch_docs",
    "sink.cloud_id",
    "sink.distribution",
    "sink.retention_days",
    "sink.tls_insecure_skip_verify",
    "metrics.address",
    "metrics.max_series",
    "kubernetes.source",
    "kubernetes.kubelet_url",
    "kubernetes.kubelet_poll_secs",
    "kubernetes.enrich_peers",
    "kubernetes.start_jitter_secs",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z0-9:/._*-]{0,24}".prop_map(|s| format!("{s:?}")),
        Just("elasticsearch".to_owned()),
        Just("https://es:9200".to_owned()),
        Just("[]".to_owned()),
        Just("[a, /b, \"%START_TIME%\"]".to_owned()),
        Just("{}".to_owned()),
        Just("~".to_owned()),
    ]
}

/// A YAML document of known sections with random values.
fn document() -> impl Strategy<Value = String> {
    proptest::collection::vec((proptest::sample::select(FIELDS), value()), 0..12).prop_map(
        |pairs| {
            let mut top = String::new();
            let mut sections: Vec<(&str, String)> = Vec::new();
            for (field, v) in pairs {
                match field.split_once('.') {
                    None => top.push_str(&format!("{field}: {v}\n")),
                    Some((section, key)) => {
                        match sections.iter_mut().find(|(s, _)| *s == section) {
                            Some((_, body)) => body.push_str(&format!("  {key}: {v}\n")),
                            None => sections.push((section, format!("  {key}: {v}\n"))),
                        }
                    }
                }
            }
            for (section, body) in sections {
                top.push_str(&format!("{section}:\n{body}"));
            }
            top
        },
    )
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match Config::parse(text, "random.yaml").and_then(|c| c.validate(&no_env)) {
        Ok(_) => Ok(()),
        Err(ConfigError::Syntax { path, message }) => {
            prop_assert_eq!(path, "random.yaml");
            prop_assert!(!message.is_empty());
            Ok(())
        }
        Err(ConfigError::Invalid { field, why, .. }) => {
            let known = FIELDS
                .iter()
                .any(|f| field.starts_with(f.split('.').next().unwrap_or(f)));
            prop_assert!(known, "refusal names no known field: {field}");
            prop_assert!(!why.is_empty());
            Ok(())
        }
        Err(ConfigError::Read { .. }) => Err(TestCaseError::fail("parse reads no file")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_documents_are_loaded_or_refused_by_field(text in document()) {
        check(&text)?;
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        check(&text)?;
    }
}
