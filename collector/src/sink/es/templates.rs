//! What the sink installs at start: the lifecycle policy and the templates of
//! `deploy/elasticsearch/`, adapted to the configuration (retention, daily-index prefixes)
//! and, for OpenSearch, translated as `deploy/opensearch/README.md` says (ISM instead of
//! ILM, `flat_object` instead of `flattened`, types OpenSearch lacks mapped to their
//! nearest).

use serde_json::{Value, json};

use super::bulk::Destination;
use super::config::EsSettings;

const ILM: &str = include_str!("../../../../deploy/elasticsearch/ilm-policy.json");
const ISM: &str = include_str!("../../../../deploy/opensearch/ism-policy.json");
const MAPPINGS: &str =
    include_str!("../../../../deploy/elasticsearch/component-template-mappings.json");
const SETTINGS: &str =
    include_str!("../../../../deploy/elasticsearch/component-template-settings.json");
const DATA_STREAMS: &str = include_str!("../../../../deploy/elasticsearch/index-template.json");
const DAILY: &str = include_str!("../../../../deploy/elasticsearch/index-template-daily.json");

/// The `PUT` requests, in order: (path, JSON body).
pub fn requests(cfg: &EsSettings) -> Vec<(&'static str, String)> {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let prefixes: Vec<String> = std::iter::once(&cfg.destination)
        .chain(cfg.routes.iter().map(|r| &r.destination))
        .filter_map(|d| match d {
            Destination::DailyIndex { prefix } => Some(format!("{prefix}-*")),
            Destination::DataStream { .. } => None,
        })
        .collect();
    let retention = format!("{}d", cfg.retention_days);
    let mut out = Vec::new();
    let mut mappings = parse(MAPPINGS);
    let mut settings = parse(SETTINGS);
    if cfg.opensearch {
        let mut ism = parse(ISM);
        ism["policy"]["states"][0]["transitions"][0]["conditions"]["min_index_age"] =
            json!(retention);
        out.push(("/_plugins/_ism/policies/meshtrail", ism.to_string()));
        translate_types(&mut mappings);
        if let Some(s) = settings["template"]["settings"].as_object_mut() {
            s.remove("index.lifecycle.name");
        }
    } else {
        let mut ilm = parse(ILM);
        ilm["policy"]["phases"]["delete"]["min_age"] = json!(retention);
        out.push(("/_ilm/policy/meshtrail", ilm.to_string()));
    }
    out.push((
        "/_component_template/meshtrail-mappings",
        mappings.to_string(),
    ));
    out.push((
        "/_component_template/meshtrail-settings",
        settings.to_string(),
    ));
    if prefixes.is_empty() {
        out.push((
            "/_index_template/meshtrail",
            parse(DATA_STREAMS).to_string(),
        ));
    } else {
        // As shipped it matches `meshtrail-*`; here, the configured prefixes.
        // Daily indices are not rolled over, so the rollover policy is not attached to them.
        let mut daily = parse(DAILY);
        daily["index_patterns"] = json!(prefixes);
        out.push(("/_index_template/meshtrail-daily", daily.to_string()));
    }
    out
}

/// Elasticsearch field types OpenSearch lacks, as their nearest OpenSearch types.
fn translate_types(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(t)) = map.get_mut("type") {
                let new = match t.as_str() {
                    "flattened" => Some("flat_object"),
                    "constant_keyword" | "wildcard" => Some("keyword"),
                    "match_only_text" => Some("text"),
                    _ => None,
                };
                if let Some(n) = new {
                    *t = n.to_owned();
                }
            }
            for child in map.values_mut() {
                translate_types(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(translate_types),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn es(yaml: &str) -> EsSettings {
        let cfg = Config::parse(
            &format!("sink:\n  type: elasticsearch\n  url: http://es:9200\n{yaml}"),
            "t",
        )
        .unwrap()
        .validate(&|_| None)
        .unwrap();
        match cfg.sink {
            crate::config::Sink::Elasticsearch(e) => e,
            other => panic!("{other:?}"),
        }
    }

    fn body(reqs: &[(&str, String)], path: &str) -> Value {
        let (_, b) = reqs.iter().find(|(p, _)| *p == path).unwrap();
        serde_json::from_str(b).unwrap()
    }

    #[test]
    fn elasticsearch_with_retention() {
        let reqs = requests(&es("  retention_days: 7\n"));
        let paths: Vec<&str> = reqs.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            paths,
            [
                "/_ilm/policy/meshtrail",
                "/_component_template/meshtrail-mappings",
                "/_component_template/meshtrail-settings",
                "/_index_template/meshtrail"
            ]
        );
        assert_eq!(
            body(&reqs, paths[0])["policy"]["phases"]["delete"]["min_age"],
            "7d"
        );
        let text = &reqs[1].1;
        assert!(text.contains("\"flattened\""));
    }

    #[test]
    fn opensearch_translation() {
        let reqs = requests(&es("  distribution: opensearch\n"));
        let paths: Vec<&str> = reqs.iter().map(|(p, _)| *p).collect();
        assert_eq!(paths[0], "/_plugins/_ism/policies/meshtrail");
        let ism = body(&reqs, paths[0]);
        assert_eq!(
            ism["policy"]["states"][0]["transitions"][0]["conditions"]["min_index_age"],
            "30d"
        );
        let mappings = &reqs[1].1;
        for gone in [
            "flattened",
            "constant_keyword",
            "match_only_text",
            "wildcard",
        ] {
            assert!(!mappings.contains(&format!("\"{gone}\"")), "{gone} left");
        }
        assert!(mappings.contains("\"flat_object\""));
        let settings = body(&reqs, "/_component_template/meshtrail-settings");
        assert!(
            settings["template"]["settings"]
                .get("index.lifecycle.name")
                .is_none()
        );
        assert_eq!(
            settings["template"]["settings"]["index.codec"],
            "best_compression"
        );
    }

    #[test]
    fn daily_indices_match_every_prefix() {
        let reqs = requests(&es(
            "  logstash_prefix: mesh\n  routes:\n    - gateway: ingress\n      logstash_prefix: ingress\n",
        ));
        let daily = body(&reqs, "/_index_template/meshtrail-daily");
        assert_eq!(daily["index_patterns"], json!(["mesh-*", "ingress-*"]));
    }
}
