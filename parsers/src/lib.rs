//! Parsing for meshtrail: container-log framing, Envoy/Istio access logs, and their
//! security classification. Pure: no I/O, no async, no clock.
//!
//! ```
//! use meshtrail_parsers::{classify, envoy::{Field, Hint, Parsed, Parser}, frame};
//!
//! let raw = br#"2026-01-30T04:09:28.36817375Z stdout F [2026-01-30T04:09:27.772Z] "GET /api HTTP/1.1" 403 - rbac_access_denied_matched_policy[none] - "-" 0 19 0 - "-" "curl/8.5.0" "af21" "api" "-" inbound|8080|| - 10.1.91.146:8080 10.1.0.1:33614 - -"#;
//! let record = frame::frame(raw, frame::Framing::Auto);
//! let line = std::str::from_utf8(&record.body).unwrap();
//! let parser = Parser::auto();
//! let Parsed::Access { format, fields } = parser.parse(line, &mut Hint::default()) else { panic!() };
//! assert_eq!((format, fields.status()), ("istio-1.9", Some(403)));
//! let verdict = classify::classify(&fields, None);
//! assert_eq!(verdict.outcome, classify::Outcome::AuthzDenied);
//! assert_eq!(verdict.denial.unwrap().policy, Some("none"));
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod classify;
pub mod envoy;
pub mod frame;
pub mod json;
pub mod partial;
pub mod timestamp;
