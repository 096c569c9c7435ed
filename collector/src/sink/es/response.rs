//! What Elasticsearch said about a `_bulk` request, one outcome per document: delivered, a
//! duplicate (409 on `create`: it was delivered before, by a replay), to retry (429,
//! `es_rejected_execution_exception`, 5xx), or rejected for good (any other 4xx: to the
//! dead-letter file). A bulk answers 200 even when items failed, so every item is read:
//! judging the request by `"errors":true` is how other collectors lose or duplicate data.

use serde_json::Value;

/// One document's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// Written.
    Delivered,
    /// Already there (409 on `create`): counts as delivered.
    Duplicate,
    /// Refused for now; send again after a backoff.
    Retry {
        /// The item's status.
        status: u16,
    },
    /// Refused for good (a mapping error, say): dead-letter it.
    Reject {
        /// The item's status.
        status: u16,
        /// `error.type`.
        kind: String,
        /// `error.reason`.
        reason: String,
    },
}

/// The outcome of a whole `_bulk` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// One outcome per document, in request order.
    Items(Vec<Item>),
    /// The request failed as a whole but may succeed later (429, 5xx, 401/403 while
    /// credentials are fixed, an answer that cannot be read): send it all again.
    RetryAll {
        /// HTTP status (0 when the answer could not be read).
        status: u16,
        /// Why, for the log.
        reason: String,
    },
    /// 413: the body is over `http.max_content_length`; send it in halves.
    TooLarge,
    /// The request itself is wrong (a 400 on the request, not on items): every document
    /// is dead-lettered with this error rather than retried forever.
    RejectAll {
        /// HTTP status.
        status: u16,
        /// `error.type`.
        kind: String,
        /// `error.reason`.
        reason: String,
    },
}

impl Outcome {
    /// Elasticsearch judged the documents (stored, refused, or rejected for good), as
    /// opposed to a request that failed whole and whose documents go again unjudged.
    pub fn answered_items(&self) -> bool {
        matches!(self, Outcome::Items(_) | Outcome::RejectAll { .. })
    }
}

fn error_of(v: &Value) -> (String, String) {
    let e = &v["error"];
    let kind = e["type"].as_str().unwrap_or("unknown").to_owned();
    let reason = e["reason"]
        .as_str()
        .map_or_else(|| e.to_string(), str::to_owned);
    (kind, reason)
}

fn item(entry: &Value) -> Item {
    // Each entry is a one-key object named after the action.
    let Some((action, body)) = entry.as_object().and_then(|o| o.iter().next()) else {
        return Item::Retry { status: 0 };
    };
    let status = body["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(0);
    let (kind, reason) = error_of(body);
    match status {
        200..=299 => Item::Delivered,
        409 if action == "create" && kind == "version_conflict_engine_exception" => Item::Duplicate,
        429 | 500..=599 => Item::Retry { status },
        _ if kind == "es_rejected_execution_exception" => Item::Retry { status },
        0 => Item::Retry { status },
        _ => Item::Reject {
            status,
            kind,
            reason,
        },
    }
}

/// A `_bulk` answer's items, read into types: building a map per item (serde_json's
/// `Value`) cost more than the rest of the answer when a few items in every answer fail.
#[derive(serde::Deserialize)]
struct Entries<'a> {
    #[serde(borrow)]
    items: Vec<Entry<'a>>,
}

/// One item: a one-key object named after the action.
#[derive(serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Entry<'a> {
    Create(#[serde(borrow)] Answered<'a>),
    Index(#[serde(borrow)] Answered<'a>),
    Update(#[serde(borrow)] Answered<'a>),
    Delete(#[serde(borrow)] Answered<'a>),
}

#[derive(serde::Deserialize)]
struct Answered<'a> {
    status: Option<u16>,
    #[serde(borrow)]
    error: Option<ItemError<'a>>,
}

#[derive(serde::Deserialize)]
struct ItemError<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    reason: Option<std::borrow::Cow<'a, str>>,
}

impl Entry<'_> {
    /// The item's outcome, by the same rules as [`item`]; `None` for an error without a
    /// reason, which [`item`] reads whole.
    fn outcome(self) -> Option<Item> {
        let (create, answered) = match self {
            Entry::Create(a) => (true, a),
            Entry::Index(a) | Entry::Update(a) | Entry::Delete(a) => (false, a),
        };
        let status = answered.status.unwrap_or(0);
        let (kind, reason) = match answered.error {
            Some(ItemError {
                kind,
                reason: Some(reason),
            }) => (
                kind.unwrap_or(std::borrow::Cow::Borrowed("unknown")),
                reason,
            ),
            Some(_) => return None,
            None => ("unknown".into(), "null".into()),
        };
        Some(match status {
            200..=299 => Item::Delivered,
            409 if create && kind == "version_conflict_engine_exception" => Item::Duplicate,
            429 | 500..=599 => Item::Retry { status },
            _ if kind == "es_rejected_execution_exception" => Item::Retry { status },
            0 => Item::Retry { status },
            _ => Item::Reject {
                status,
                kind: kind.into_owned(),
                reason: reason.into_owned(),
            },
        })
    }
}

/// The items of a 200 answer of `sent` documents, read into types; `None` when the answer
/// is not in the usual shape (then it is read as a `Value`).
fn typed_items(body: &[u8], sent: usize) -> Option<Vec<Item>> {
    let Entries { items } = serde_json::from_slice(body).ok()?;
    if items.len() != sent {
        return None;
    }
    items.into_iter().map(Entry::outcome).collect()
}

/// The top of a `_bulk` answer, read without building its items.
#[derive(serde::Deserialize)]
struct Summary {
    errors: bool,
    items: Vec<serde::de::IgnoredAny>,
}

/// Reads the answer to a `_bulk` request of `sent` documents.
pub fn classify(status: u16, body: &[u8], sent: usize) -> Outcome {
    // The common answer, every item created: `"errors": false` says so for all of them
    // (a 409 or any other item failure sets it), so the items need only be counted.
    if status == 200
        && let Ok(Summary {
            errors: false,
            items,
        }) = serde_json::from_slice::<Summary>(body)
        && items.len() == sent
    {
        return Outcome::Items(vec![Item::Delivered; sent]);
    }
    if status == 200
        && let Some(items) = typed_items(body, sent)
    {
        return Outcome::Items(items);
    }
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    match status {
        200 => {
            let Some(items) = parsed.as_ref().and_then(|v| v["items"].as_array()) else {
                return Outcome::RetryAll {
                    status,
                    reason: "a 200 without items; sending again".into(),
                };
            };
            if items.len() != sent {
                return Outcome::RetryAll {
                    status,
                    reason: format!(
                        "{} items answered for {sent} documents; sending again",
                        items.len()
                    ),
                };
            }
            Outcome::Items(items.iter().map(item).collect())
        }
        413 => Outcome::TooLarge,
        408 | 429 | 500..=599 | 401 | 403 => {
            let (kind, reason) = parsed
                .as_ref()
                .map_or(("none".into(), String::new()), error_of);
            let hint = if matches!(status, 401 | 403) {
                " (check the Elasticsearch credentials)"
            } else {
                ""
            };
            Outcome::RetryAll {
                status,
                reason: format!("{kind}: {reason}{hint}"),
            }
        }
        _ => {
            let (kind, reason) = parsed.as_ref().map_or(
                ("none".into(), String::from_utf8_lossy(body).into_owned()),
                error_of,
            );
            Outcome::RejectAll {
                status,
                kind,
                reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/es/",
                $name
            ))
        };
    }

    #[test]
    fn all_created() {
        let Outcome::Items(items) = classify(
            200,
            fixture!("bulk-response-create-all-success.es8-capture.json"),
            4,
        ) else {
            panic!()
        };
        assert_eq!(items, vec![Item::Delivered; 4]);
    }

    #[test]
    fn create_conflict_is_a_duplicate() {
        let body = fixture!("bulk-response-create-409-version_conflict.go-client-fixture.json");
        let v: Value = serde_json::from_slice(body).unwrap();
        let n = v["items"].as_array().unwrap().len();
        let Outcome::Items(items) = classify(200, body, n) else {
            panic!()
        };
        assert_eq!(items[0], Item::Delivered);
        assert_eq!(items[1], Item::Duplicate);
        assert!(items.iter().all(|i| !matches!(i, Item::Retry { .. })));
    }

    #[test]
    fn mapping_errors_are_rejected_with_the_reason() {
        let Outcome::Items(items) = classify(
            200,
            fixture!("bulk-response-create-400-document_parsing_exception.es8-capture.json"),
            4,
        ) else {
            panic!()
        };
        let rejected: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Item::Reject {
                    status: 400,
                    kind,
                    reason,
                } => Some((kind.as_str(), reason.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(rejected.len(), 2);
        assert!(
            rejected
                .iter()
                .all(|(k, r)| *k == "document_parsing_exception" && !r.is_empty())
        );
        assert_eq!(items.iter().filter(|i| **i == Item::Delivered).count(), 2);
        let Outcome::Items(items) = classify(
            200,
            fixture!("bulk-response-index-400-mapper_parsing_exception.es7-capture.json"),
            2,
        ) else {
            panic!()
        };
        assert!(
            items.iter().all(
                |i| matches!(i, Item::Reject { kind, .. } if kind == "mapper_parsing_exception")
            )
        );
    }

    #[test]
    fn per_item_429_and_5xx_are_retried() {
        let body = br#"{"errors":true,"took":1,"items":[
            {"create":{"_index":"x","_id":"1","status":201}},
            {"create":{"_index":"x","_id":"2","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_index":"x","_id":"3","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}]}"#;
        assert_eq!(
            classify(200, body, 3),
            Outcome::Items(vec![
                Item::Delivered,
                Item::Retry { status: 429 },
                Item::Retry { status: 503 }
            ])
        );
    }

    #[test]
    fn whole_request_failures() {
        assert!(matches!(
            classify(429, fixture!("error-429-es_rejected_execution_exception-indexing-pressure.es8-capture.json"), 10),
            Outcome::RetryAll { status: 429, reason } if reason.starts_with("es_rejected_execution_exception: rejected execution of coordinating operation")
        ));
        assert!(matches!(
            classify(401, fixture!("error-401-security_exception.es8.8.1-capture.json"), 10),
            Outcome::RetryAll { status: 401, reason } if reason.contains("security_exception") && reason.contains("credentials")
        ));
        assert_eq!(classify(413, b"", 10), Outcome::TooLarge);
        assert!(matches!(
            classify(502, b"<html>bad gateway</html>", 10),
            Outcome::RetryAll { status: 502, .. }
        ));
        assert!(matches!(
            classify(400, fixture!("error-400-malformed-action-metadata-line.capture.json"), 10),
            Outcome::RejectAll { status: 400, kind, .. } if kind == "illegal_argument_exception"
        ));
    }

    #[test]
    fn answers_that_do_not_line_up_are_sent_again() {
        assert!(matches!(
            classify(
                200,
                fixture!("bulk-response-create-all-success.es8-capture.json"),
                5
            ),
            Outcome::RetryAll { .. }
        ));
        assert!(matches!(
            classify(200, b"not json", 1),
            Outcome::RetryAll { .. }
        ));
    }
}

#[cfg(test)]
mod typed {
    use super::*;

    /// The Value reading, the one the typed reading must agree with.
    fn by_value(body: &[u8]) -> Vec<Item> {
        let v: Value = serde_json::from_slice(body).expect("JSON");
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(item)
            .collect()
    }

    #[test]
    fn typed_items_read_as_the_value_reading_does() {
        let bodies: [&[u8]; 6] = [
            include_bytes!(
                "../../../../tests/fixtures/es/bulk-response-create-400-document_parsing_exception.es8-capture.json"
            ),
            include_bytes!(
                "../../../../tests/fixtures/es/bulk-response-create-409-version_conflict.go-client-fixture.json"
            ),
            include_bytes!(
                "../../../../tests/fixtures/es/bulk-response-create-all-success.es8-capture.json"
            ),
            include_bytes!(
                "../../../../tests/fixtures/es/bulk-response-index-400-mapper_parsing_exception.es7-capture.json"
            ),
            include_bytes!(
                "../../../../tests/fixtures/es/bulk-response-mixed-ops-all-success.es9-docs.json"
            ),
            include_bytes!(
                "../../../../tests/fixtures/es/bulk-response-update-404-document_missing-plus-create-201.es9-docs.json"
            ),
        ];
        for body in bodies {
            let expected = by_value(body);
            assert_eq!(typed_items(body, expected.len()), Some(expected));
        }
    }

    proptest::proptest! {
        /// Items as the agent's `filter_path` leaves them, with any status and error.
        #[test]
        fn any_item_reads_as_the_value_reading_does(
            items in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["create", "index", "update", "delete"]),
                    proptest::option::of(proptest::sample::select(vec![200u16, 201, 400, 404, 409, 429, 500, 503, 0])),
                    proptest::option::of((
                        proptest::option::of(proptest::sample::select(vec![
                            "version_conflict_engine_exception",
                            "es_rejected_execution_exception",
                            "document_parsing_exception",
                            "x\"y",
                        ])),
                        proptest::option::of("[a-z \\\\\"é]{0,12}"),
                    )),
                ),
                0..20,
            )
        ) {
            let entries: Vec<Value> = items
                .iter()
                .map(|(action, status, error)| {
                    let mut body = serde_json::Map::new();
                    if let Some(s) = status {
                        body.insert("status".into(), (*s).into());
                    }
                    if let Some((kind, reason)) = error {
                        let mut e = serde_json::Map::new();
                        if let Some(k) = kind {
                            e.insert("type".into(), (*k).into());
                        }
                        if let Some(r) = reason {
                            e.insert("reason".into(), r.clone().into());
                        }
                        body.insert("error".into(), e.into());
                    }
                    serde_json::json!({ *action: body })
                })
                .collect();
            let body = serde_json::to_vec(&serde_json::json!({"errors": true, "items": entries}))
                .expect("serialisable");
            let expected = by_value(&body);
            // An error without a reason is left to the Value reading.
            let typed = typed_items(&body, expected.len());
            if items.iter().all(|(_, _, e)| e.as_ref().is_none_or(|(_, r)| r.is_some())) {
                proptest::prop_assert_eq!(typed, Some(expected.clone()));
            }
            proptest::prop_assert_eq!(classify(200, &body, expected.len()), Outcome::Items(expected));
        }
    }
}
