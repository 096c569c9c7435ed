//! Every record of the public corpus (`data/lines.jsonl`, copied from `shared/corpus/`) is a
//! test case. Failures are collected and reported together, each with its id, the raw line
//! and the field.
//!
//! Each access log must also read the same bare, as a CRI `F` record, as CRI `P` records
//! split at every byte, and as a docker json-file record.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use meshtrail_parsers::envoy::{Field, Fields, Hint, Parsed, Parser};
use meshtrail_parsers::frame::{Framing, frame};
use meshtrail_parsers::partial::Joiner;
use regex::Regex;
use serde_json::Value;

/// Envoy's default plus %RESPONSE_CODE_DETAILS%: the format the `envoy-default+rcd` records
/// were written with (corpus/formats.md section 5).
const RCD: &str = r#"[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%""#;

/// Wrappers no node writes (log viewers, compose): removed as a user would before piping.
fn strip(wrapper: &str, raw: &str) -> String {
    let re = match wrapper {
        "docker-compose" | "docker-compose-timestamps" => r"^\S+\s+\|\s",
        "stern-prefix" => r"^\[[^\]]*\] ",
        "pod-container-prefix" => r"^\S+ \S+ ([\[{])",
        "container-prefix" => r"^\S+ ([\[{])",
        _ => return raw.to_owned(),
    };
    Regex::new(re).unwrap().replace(raw, "$1").into_owned()
}

/// Frames and joins one physical line, then parses it.
fn read_line(parser: &Parser, raw: &[u8]) -> (Option<String>, Option<Vec<(String, String)>>) {
    let mut joiner = Joiner::default();
    let joined = joiner
        .push(frame(raw, Framing::Auto), 0)
        .expect("a single full record");
    let text = joined.text().into_owned();
    match parser.parse(&text, &mut Hint::default()) {
        Parsed::Access { format, fields } => (Some(format.to_owned()), Some(canonical(&fields))),
        Parsed::Other(_) => (None, None),
    }
}

/// Every value of a line, for comparing two reads of it.
fn canonical(f: &Fields<'_>) -> Vec<(String, String)> {
    let mut v: Vec<_> = Field::ALL
        .iter()
        .filter_map(|k| f.get(*k).map(|x| (k.key().to_owned(), x.to_owned())))
        .collect();
    v.extend(f.extras().map(|(k, x)| (k.to_owned(), x.to_owned())));
    v
}

fn compare(
    exp: &serde_json::Map<String, Value>,
    got: &[(String, String)],
    defective: bool,
) -> Vec<String> {
    let mut bad = Vec::new();
    for field in Field::ALL {
        let Some(want) = exp.get(field.key()) else {
            continue;
        };
        let have = got
            .iter()
            .find(|(k, _)| k == field.key())
            .map(|(_, v)| v.as_str());
        let ok = match (want, have) {
            (Value::Null, None) => true,
            (Value::Array(a), h) if *field == Field::ResponseFlags => {
                let mut want: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                let mut have: Vec<&str> = h.map(|h| h.split(',').collect()).unwrap_or_default();
                want.sort_unstable();
                have.sort_unstable();
                want == have
            }
            (Value::Number(n), Some(h)) => h.parse::<u64>().ok() == n.as_u64(),
            (Value::Number(n), None) => *field == Field::ResponseCode && n.as_u64() == Some(0),
            (Value::String(s), Some(h)) if *field == Field::UpstreamCluster => {
                s.trim_end_matches(';') == h.trim_end_matches(';')
            }
            (Value::String(s), Some(h)) => s == h,
            _ => false,
        };
        let excused = defective && want.is_null();
        if !(ok || excused) {
            bad.push(format!("{}: got {have:?}, want {want}", field.key()));
        }
    }
    bad
}

#[test]
fn every_corpus_record() {
    let auto = Parser::auto();
    let rcd = Parser::from_specs([RCD]).unwrap();
    let data = include_str!("data/lines.jsonl");
    let mut failures = Vec::new();
    let mut checked = 0;
    for line in data.lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let id = rec["id"].as_str().unwrap();
        let status = rec["parse_status"].as_str().unwrap();
        let format = rec["format"].as_str().unwrap();
        let exp = rec["expected"].as_object().unwrap();
        let mut raw = strip(
            rec["wrapper"].as_str().unwrap(),
            rec["raw"].as_str().unwrap(),
        );
        if status.starts_with("malformed") && format.contains("hard line break") {
            raw = raw.replace('\n', " ");
        }
        let access_log = exp.get("is_access_log") == Some(&Value::Bool(true));
        let negative =
            !access_log || exp.get("default_format_parse_expected") == Some(&Value::Bool(false));
        let defective = !negative && status != "ok";
        let parser = if format.starts_with("envoy-default+rcd") {
            &rcd
        } else {
            &auto
        };
        let (got_format, got) = read_line(parser, raw.as_bytes());
        checked += 1;
        match (negative, defective, got) {
            (true, _, Some(_)) => failures.push(format!(
                "{id}: not an access log, read as {got_format:?}\n  {raw}"
            )),
            (true, _, None) | (false, true, None) => {}
            (false, false, None) => failures.push(format!("{id}: access log not read\n  {raw}")),
            (false, _, Some(fields)) => {
                for b in compare(exp, &fields, defective) {
                    failures.push(format!("{id}: {b}\n  {raw}"));
                }
                if let Some(tcp) = exp.get("is_tcp").and_then(Value::as_bool) {
                    let is_tcp = !fields.iter().any(|(k, _)| k == "method" || k == "protocol");
                    if is_tcp != tcp {
                        failures.push(format!("{id}: is_tcp {is_tcp}, want {tcp}"));
                    }
                }
            }
        }
    }
    assert_eq!(checked, 70, "the corpus has 70 records");
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The Envoy line inside a record, unwrapped by the framing under test's neighbour.
fn envoy_lines() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in include_str!("data/lines.jsonl").lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        if rec["parse_status"] != "ok"
            || rec["expected"]["is_access_log"] != true
            || rec["format"] == "envoy-default+rcd"
        {
            continue;
        }
        let raw = strip(
            rec["wrapper"].as_str().unwrap(),
            rec["raw"].as_str().unwrap(),
        );
        let body = frame(raw.as_bytes(), Framing::Auto).body.into_owned();
        out.push((
            rec["id"].as_str().unwrap().to_owned(),
            String::from_utf8(body).unwrap(),
        ));
    }
    out
}

#[test]
fn every_framing_reads_the_same_fields() {
    let parser = Parser::auto();
    let lines = envoy_lines();
    assert!(lines.len() > 50);
    for (id, body) in &lines {
        let (fmt, bare) = read_line(&parser, body.as_bytes());
        let bare = bare.unwrap_or_else(|| panic!("{id}: not read bare"));
        let cri = format!("2026-01-30T04:09:28.36817375Z stdout F {body}");
        assert_eq!(
            read_line(&parser, cri.as_bytes()),
            (fmt.clone(), Some(bare.clone())),
            "{id}: CRI F"
        );
        let docker = format!(
            r#"{{"log":{},"stream":"stdout","time":"2020-01-23T16:32:49.400311038Z"}}"#,
            serde_json::to_string(&format!("{body}\n")).unwrap()
        );
        assert_eq!(
            read_line(&parser, docker.as_bytes()),
            (fmt.clone(), Some(bare.clone())),
            "{id}: docker"
        );
        for split in (1..body.len()).filter(|i| body.is_char_boundary(*i)) {
            let mut joiner = Joiner::default();
            let p = format!("2026-01-30T04:09:28.1Z stdout P {}", &body[..split]);
            let f = format!("2026-01-30T04:09:28.2Z stdout F {}", &body[split..]);
            assert!(joiner.push(frame(p.as_bytes(), Framing::Cri), 0).is_none());
            let joined = joiner
                .push(frame(f.as_bytes(), Framing::Cri), p.len() as u64 + 1)
                .unwrap();
            assert_eq!(
                (joined.offset, joined.records, joined.time.as_deref()),
                (0, 2, Some("2026-01-30T04:09:28.1Z"))
            );
            let text = String::from_utf8(joined.body.into_owned()).unwrap();
            let got = match parser.parse(&text, &mut Hint::default()) {
                Parsed::Access { fields, .. } => Some(canonical(&fields)),
                Parsed::Other(_) => None,
            };
            assert_eq!(
                got.as_ref(),
                Some(&bare),
                "{id}: CRI P split at byte {split}"
            );
        }
    }
}
