//! `_bulk` request bodies: one `create` action per document, with the document's
//! deterministic `_id`, so a replay after a crash or a timeout answers 409 instead of
//! writing a duplicate; and the name of the index or data stream a document goes to.

use crate::document::writer::write_str;

/// Where documents go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Data streams `logs-<dataset>-<namespace>` (the default).
    DataStream {
        /// The data stream namespace, e.g. `default`.
        namespace: String,
    },
    /// Daily indices `<prefix>-YYYY.MM.DD` (`logstash_format`, as the Fluentd config did).
    DailyIndex {
        /// The index prefix, e.g. `logstash`.
        prefix: String,
    },
}

/// Why a data stream namespace or an index prefix cannot be used.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err("must be 1 to 100 characters".into());
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lower case".into());
    }
    if let Some(c) = name.chars().find(|c| "\\/*?\"<>|, #:-".contains(*c)) {
        return Err(format!("must not contain {c:?}"));
    }
    if name.starts_with(['_', '+', '.']) {
        return Err("must not start with _, + or .".into());
    }
    Ok(())
}

impl Destination {
    /// The index or data stream for a document of `dataset` (`meshtrail.access`) whose
    /// `@timestamp` is `timestamp` (RFC 3339, UTC, as documents carry it).
    pub fn target(&self, dataset: &str, timestamp: Option<&str>) -> String {
        match self {
            Destination::DataStream { namespace } => format!("logs-{dataset}-{namespace}"),
            Destination::DailyIndex { prefix } => {
                let day = timestamp
                    .filter(|t| t.len() >= 10 && t.as_bytes()[4] == b'-')
                    .map_or_else(|| "unknown-date".to_owned(), |t| t[..10].replace('-', "."));
                format!("{prefix}-{day}")
            }
        }
    }
}

/// Appends `{"create":{"_index":…,"_id":…}}` and the document, each on its own line.
/// `doc` is one line of JSON (documents never hold a raw newline: strings are escaped).
pub fn push_create(out: &mut Vec<u8>, index: &str, id: &str, doc: &[u8]) {
    debug_assert!(!doc.contains(&b'\n'), "a document spans one line");
    out.extend_from_slice(br#"{"create":{"_index":"#);
    write_str(out, index);
    out.extend_from_slice(br#","_id":"#);
    write_str(out, id);
    out.extend_from_slice(b"}}\n");
    out.extend_from_slice(doc);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_actions_on_exact_bytes() {
        let mut out = Vec::new();
        push_create(
            &mut out,
            "logs-meshtrail.access-default",
            "abc",
            br#"{"a":1}"#,
        );
        push_create(&mut out, "x", "q\"uote", b"{}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"create\":{\"_index\":\"logs-meshtrail.access-default\",\"_id\":\"abc\"}}\n{\"a\":1}\n\
             {\"create\":{\"_index\":\"x\",\"_id\":\"q\\\"uote\"}}\n{}\n"
        );
    }

    #[test]
    fn destinations() {
        let ds = Destination::DataStream {
            namespace: "prod".into(),
        };
        assert_eq!(
            ds.target("meshtrail.access", Some("2026-11-24T10:00:00.000Z")),
            "logs-meshtrail.access-prod"
        );
        let daily = Destination::DailyIndex {
            prefix: "logstash".into(),
        };
        assert_eq!(
            daily.target("meshtrail.container", Some("2026-11-24T23:59:59.999Z")),
            "logstash-2026.11.24"
        );
        assert_eq!(
            daily.target("meshtrail.container", None),
            "logstash-unknown-date"
        );
    }

    #[test]
    fn names() {
        assert!(check_name("default").is_ok() && check_name("prod_eu").is_ok());
        for bad in ["", "Prod", "a-b", "a b", "_x", "a*", &"x".repeat(101)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
