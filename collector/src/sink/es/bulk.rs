//! `_bulk` actions: one `create` per document, with the document's deterministic `_id`,
//! so a replay after a crash or a timeout answers 409 instead of writing a duplicate, into
//! the index or data stream the document goes to. The workers write them beside the
//! documents; the sink only concatenates.

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
    /// Appends the `create` action, ending in a newline, of a document of `dataset`
    /// (`meshtrail.access`) whose `@timestamp` is `timestamp` (RFC 3339, UTC, as documents
    /// carry it) and whose `_id` is `id`. Names are validated at start ([`check_name`]) and
    /// ids are hex, so nothing needs escaping; the workers call this once per document.
    pub fn push_action(
        &self,
        out: &mut Vec<u8>,
        dataset: &str,
        timestamp: Option<&[u8]>,
        id: Option<&[u8]>,
    ) {
        out.extend_from_slice(br#"{"create":{"_index":""#);
        match self {
            Destination::DataStream { namespace } => {
                out.extend_from_slice(b"logs-");
                out.extend_from_slice(dataset.as_bytes());
                out.push(b'-');
                out.extend_from_slice(namespace.as_bytes());
            }
            Destination::DailyIndex { prefix } => {
                out.extend_from_slice(prefix.as_bytes());
                out.push(b'-');
                match timestamp.and_then(|t| t.get(..10)).filter(|d| is_date(d)) {
                    Some(d) => {
                        out.extend_from_slice(&d[..4]);
                        out.push(b'.');
                        out.extend_from_slice(&d[5..7]);
                        out.push(b'.');
                        out.extend_from_slice(&d[8..10]);
                    }
                    None => out.extend_from_slice(b"unknown-date"),
                }
            }
        }
        out.push(b'"');
        if let Some(id) = id {
            out.extend_from_slice(br#","_id":""#);
            out.extend_from_slice(id);
            out.push(b'"');
        }
        out.extend_from_slice(b"}}\n");
    }
}

/// `YYYY-MM-DD`.
fn is_date(d: &[u8]) -> bool {
    d.len() == 10
        && d.iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(d: &Destination, dataset: &str, time: Option<&str>, id: Option<&str>) -> String {
        let mut out = Vec::new();
        d.push_action(
            &mut out,
            dataset,
            time.map(str::as_bytes),
            id.map(str::as_bytes),
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn create_actions_on_exact_bytes() {
        let ds = Destination::DataStream {
            namespace: "prod".into(),
        };
        assert_eq!(
            action(
                &ds,
                "meshtrail.access",
                Some("2026-11-24T10:00:00.000Z"),
                Some("ab12")
            ),
            "{\"create\":{\"_index\":\"logs-meshtrail.access-prod\",\"_id\":\"ab12\"}}\n"
        );
        let daily = Destination::DailyIndex {
            prefix: "logstash".into(),
        };
        assert_eq!(
            action(
                &daily,
                "meshtrail.container",
                Some("2026-11-24T23:59:59.999Z"),
                None
            ),
            "{\"create\":{\"_index\":\"logstash-2026.11.24\"}}\n"
        );
        for bad in [None, Some("yesterday at noon"), Some("2026-1-24T0")] {
            assert_eq!(
                action(&daily, "meshtrail.container", bad, Some("1")),
                "{\"create\":{\"_index\":\"logstash-unknown-date\",\"_id\":\"1\"}}\n"
            );
        }
    }

    #[test]
    fn names() {
        assert!(check_name("default").is_ok() && check_name("prod_eu").is_ok());
        for bad in ["", "Prod", "a-b", "a b", "_x", "a*", &"x".repeat(101)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
