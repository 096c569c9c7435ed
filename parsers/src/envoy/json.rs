//! Envoy/Istio JSON access logs (`accessLogEncoding: JSON`) into the same [`Fields`].
//!
//! Keys are the snake_case operator names, in any order. Values are strings in Istio
//! 1.3-era logs (`"response_code":"0"`, `"-"`) and typed in later ones (`0`, `null`);
//! both are accepted.

use std::borrow::Cow;
use std::fmt;

use super::field::{Field, Kind};
use super::fields::Fields;
use crate::json::{JsonError, Value, for_each_member};
use crate::timestamp::Timestamp;

/// Why a JSON line that looked like an access log was not taken as one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonProblem {
    /// Not valid JSON.
    Syntax(JsonError),
    /// A known key with a value of the wrong type.
    BadValue {
        /// The key.
        key: &'static str,
        /// What its value should be.
        expected: &'static str,
    },
}

impl fmt::Display for JsonProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonProblem::Syntax(e) => write!(f, "istio-json: {e}"),
            JsonProblem::BadValue { key, expected } => {
                write!(f, "istio-json: key {key:?} should be {expected}")
            }
        }
    }
}

/// The result of reading a JSON line.
#[allow(
    clippy::large_enum_variant,
    reason = "boxing the fields would allocate on every line"
)]
pub(crate) enum JsonOutcome<'a> {
    Access(Fields<'a>),
    /// JSON, or not, but not an access log (an application's structured log).
    NotAccess,
    Invalid(JsonProblem),
}

fn check(field: Field, v: &str) -> Option<&'static str> {
    let ok = v == "-"
        || match field.kind() {
            Kind::Timestamp => Timestamp::parse(v).is_some(),
            Kind::Integer => !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
            _ => true,
        };
    (!ok).then(|| match field.kind() {
        Kind::Timestamp => "an RFC 3339 timestamp",
        _ => "a non-negative integer",
    })
}

/// Reads a JSON access log. A line counts as one when it has `start_time` or
/// `response_code` and at least three keys meshtrail knows.
pub(crate) fn parse(line: &str) -> JsonOutcome<'_> {
    let mut fields = Fields::new();
    let mut known = 0;
    let mut anchor = false;
    let mut bad = None;
    let result = for_each_member(line, |key, value| {
        let value: Option<Cow<'_, str>> = match value {
            Value::Str(s) => Some(s),
            Value::Raw(r) => Some(Cow::Borrowed(r)),
            Value::Null => None,
        };
        match Field::from_key(&key) {
            Some(field) => {
                known += 1;
                anchor |= matches!(field, Field::StartTime | Field::ResponseCode);
                if let Some(v) = value {
                    if let Some(expected) = check(field, &v) {
                        bad.get_or_insert(JsonProblem::BadValue {
                            key: field.key(),
                            expected,
                        });
                    }
                    fields.set(field, v);
                }
            }
            None => {
                if let Some(v) = value {
                    fields.set_extra(key, v);
                }
            }
        }
    });
    match result {
        Err(e) if line.contains("\"start_time\"") || line.contains("\"response_code\"") => {
            JsonOutcome::Invalid(JsonProblem::Syntax(e))
        }
        Err(_) => JsonOutcome::NotAccess,
        Ok(()) if !anchor || known < 3 => JsonOutcome::NotAccess,
        Ok(()) => match bad {
            Some(problem) => JsonOutcome::Invalid(problem),
            None => JsonOutcome::Access(fields),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(line: &str) -> Fields<'_> {
        match parse(line) {
            JsonOutcome::Access(f) => f,
            JsonOutcome::NotAccess => panic!("not access: {line}"),
            JsonOutcome::Invalid(p) => panic!("invalid: {p}"),
        }
    }

    #[test]
    fn string_valued_and_typed() {
        let a = access(
            r#"{"start_time":"2019-09-17T08:33:45.970Z","response_code":"0","duration":"10001","method":"-"}"#,
        );
        assert_eq!(
            (a.status(), a.int(Field::Duration), a.get(Field::Method)),
            (None, Some(10001), None)
        );
        let b =
            access(r#"{"response_code":200,"duration":8,"method":null,"user_agent":"a \"q\""}"#);
        assert_eq!(
            (b.status(), b.get(Field::Method), b.get(Field::UserAgent)),
            (Some(200), None, Some("a \"q\""))
        );
    }

    #[test]
    fn unknown_keys_are_kept() {
        let a = access(
            r#"{"start_time":"2019-09-17T08:33:45.970Z","response_code":1,"duration":1,"x_b3":"abc"}"#,
        );
        assert_eq!(a.extras().collect::<Vec<_>>(), [("x_b3", "abc")]);
    }

    #[test]
    fn application_json_is_not_an_access_log() {
        assert!(matches!(
            parse(r#"{"level":"info","msg":"started","duration":3}"#),
            JsonOutcome::NotAccess
        ));
        assert!(matches!(
            parse(r#"{"level":"info""#),
            JsonOutcome::NotAccess
        ));
    }

    #[test]
    fn broken_access_logs_say_why() {
        let JsonOutcome::Invalid(p) = parse(
            r#"{"start_time":"2019-09-17T08:33:45.970Z","response_code":"abc","duration":1}"#,
        ) else {
            panic!()
        };
        assert_eq!(
            p.to_string(),
            r#"istio-json: key "response_code" should be a non-negative integer"#
        );
        assert!(matches!(
            parse(r#"{"start_time":"2019-09-17T08:33"#),
            JsonOutcome::Invalid(JsonProblem::Syntax(_))
        ));
    }
}
