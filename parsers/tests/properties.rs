//! Property tests: values rendered through each built-in format read back the same, by
//! `auto` and as that format only; arbitrary input never panics.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use meshtrail_parsers::classify;
use meshtrail_parsers::envoy::{Field, Hint, Kind, Parsed, Parser, Program, builtin};
use meshtrail_parsers::frame::{Framing, frame};
use meshtrail_parsers::partial::Joiner;
use proptest::prelude::*;

fn timestamp() -> impl Strategy<Value = String> {
    (0i64..4_102_444_800, 0u32..1000).prop_map(|(secs, ms)| {
        let t = meshtrail_parsers::timestamp::Timestamp {
            unix_secs: secs,
            nanos: ms * 1_000_000,
        };
        t.millis().to_string()
    })
}

fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>(), 1u16..)
            .prop_map(|(ip, p)| format!("{}.{}.{}.{}:{p}", ip[0], ip[1], ip[2], ip[3])),
        (any::<[u16; 8]>(), 1u16..)
            .prop_map(|(ip, p)| format!("[{}]:{p}", std::net::Ipv6Addr::from(ip))),
        Just("envoy://internal_client_address/".to_owned()),
    ]
}

fn value(kind: Kind) -> BoxedStrategy<Option<String>> {
    let v: BoxedStrategy<String> = match kind {
        Kind::Timestamp => return timestamp().prop_map(Some).boxed(),
        Kind::Integer => any::<u32>().prop_map(|n| n.to_string()).boxed(),
        Kind::Method => {
            prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "CONNECT", "PATCH"])
                .prop_map(str::to_owned)
                .boxed()
        }
        Kind::Protocol => prop::sample::select(vec!["HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3"])
            .prop_map(str::to_owned)
            .boxed(),
        Kind::Flags => prop::sample::subsequence(
            vec!["UF", "URX", "UH", "RL", "UAEX", "NR", "DC", "RLSE"],
            1..4,
        )
        .prop_map(|v| v.join(","))
        .boxed(),
        Kind::Address => address().boxed(),
        Kind::Token => "[a-zA-Z0-9_.|:/{}\\[\\],=-]{1,40}"
            .prop_filter("not a dash", |s| s != "-")
            .boxed(),
        // Free text: spaces and punctuation, but no double quote, so that one split exists.
        Kind::Text => "[a-zA-Z0-9 ,;:/()._=+-]{1,60}"
            .prop_filter("not a dash", |s| s != "-")
            .boxed(),
    };
    prop_oneof![1 => Just(None), 6 => v.prop_map(Some)].boxed()
}

/// Values for every field of a format, keyed by field key.
fn values_for(format: &'static str) -> impl Strategy<Value = Vec<(&'static str, Option<String>)>> {
    let mut fields: Vec<Field> = Field::ALL.to_vec();
    let program = Program::compile("x", format).unwrap();
    fields.retain(|f| {
        program
            .render(|k| (k == f.key()).then_some("\u{1}"))
            .contains('\u{1}')
    });
    fields
        .into_iter()
        .map(|f| value(f.kind()).prop_map(move |v| (f.key(), v)))
        .collect::<Vec<_>>()
}

fn round_trip(
    name: &'static str,
    format: &'static str,
    values: &[(&'static str, Option<String>)],
) -> Result<(), TestCaseError> {
    let program = Program::compile(name, format).unwrap();
    let line = program.render(|k| {
        values
            .iter()
            .find(|(key, _)| *key == k)
            .and_then(|(_, v)| v.as_deref())
    });
    let parser = Parser::auto();
    match parser.parse(&line, &mut Hint::default()) {
        Parsed::Access {
            format: got,
            fields,
        } => {
            prop_assert_eq!(got, name, "read by another format: {}", line);
            for (key, want) in values {
                let field = Field::from_key(key).unwrap();
                prop_assert_eq!(fields.get(field), want.as_deref(), "{} in {}", key, line);
            }
            // The classification never panics on any combination.
            let _ = classify::classify(&fields, None);
        }
        Parsed::Other(why) => prop_assert!(false, "not read: {:?}\n{}", why, line),
    }
    Ok(())
}

macro_rules! round_trips {
    ($($test:ident: $name:literal => $format:expr),* $(,)?) => {
        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]
            $(
                #[test]
                fn $test(values in values_for($format)) {
                    round_trip($name, $format, &values)?;
                }
            )*
        }
    };
}

round_trips! {
    round_trip_meshtrail: "meshtrail" => builtin::MESHTRAIL,
    round_trip_istio_1_9: "istio-1.9" => builtin::ISTIO_1_9,
    round_trip_istio_1_3: "istio-1.3" => builtin::ISTIO_1_3,
    round_trip_istio_1_2: "istio-1.2" => builtin::ISTIO_1_2,
    round_trip_istio_1_8: "istio-1.8" => builtin::ISTIO_1_8,
    round_trip_istio_1_1: "istio-1.1" => builtin::ISTIO_1_1,
    round_trip_istio_1_1_pre: "istio-1.1-pre" => builtin::ISTIO_1_1_PRE,
    round_trip_envoy_default: "envoy-default" => builtin::ENVOY_DEFAULT,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// A user agent may contain quotes and spaces: the other fields still read right.
    #[test]
    fn quoted_user_agents(ua in "[a-zA-Z0-9 \"();/.,-]{1,80}", code in 100u16..600, sent in any::<u32>()) {
        let program = Program::compile("istio-1.9", builtin::ISTIO_1_9).unwrap();
        let (code, sent) = (code.to_string(), sent.to_string());
        let line = program.render(|k| match k {
            "start_time" => Some("2026-11-24T10:00:00.123Z"),
            "user_agent" => Some(ua.as_str()),
            "response_code" => Some(code.as_str()),
            "bytes_sent" => Some(sent.as_str()),
            "method" => Some("GET"),
            "protocol" => Some("HTTP/1.1"),
            _ => None,
        });
        let parser = Parser::auto();
        let Parsed::Access { fields, .. } = parser.parse(&line, &mut Hint::default()) else {
            return Err(TestCaseError::fail(format!("not read: {line}")));
        };
        prop_assert_eq!(fields.get(Field::ResponseCode), Some(code.as_str()));
        prop_assert_eq!(fields.get(Field::BytesSent), Some(sent.as_str()));
        // Only one split exists when the separator first appears where the value ends.
        let unambiguous = format!("{ua}\" \"").find("\" \"") == Some(ua.len());
        if unambiguous && ua != "-" {
            prop_assert_eq!(fields.get(Field::UserAgent), Some(ua.as_str()));
        }
    }

    /// Arbitrary bytes through every framing, the joiner and the parser: no panic.
    #[test]
    fn arbitrary_bytes_never_panic(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..8)) {
        let parser = Parser::auto();
        for framing in [Framing::Auto, Framing::Cri, Framing::Docker, Framing::Kubectl, Framing::None] {
            let mut joiner = Joiner::new(256);
            for (i, line) in lines.iter().enumerate() {
                if let Some(j) = joiner.push(frame(line, framing), i as u64) {
                    let text = j.text();
                    if let Parsed::Access { fields, .. } = parser.parse(&text, &mut Hint::default()) {
                        let _ = classify::classify(&fields, None);
                    }
                }
            }
            while joiner.flush().is_some() {}
        }
    }

    /// Access-log-shaped noise (the characters and separators of real lines): no panic, and
    /// anything read as an access log has a valid timestamp and typed integers.
    #[test]
    fn shaped_noise_is_never_half_read(body in "[\\[\\]\" 0-9a-zA-Z:./|_,{}-]{0,200}") {
        let line = format!("[2026-11-24T10:00:00.123Z] \"{body}");
        let parser = Parser::auto();
        if let Parsed::Access { fields, .. } = parser.parse(&line, &mut Hint::default()) {
            for f in [Field::ResponseCode, Field::BytesReceived, Field::BytesSent, Field::Duration] {
                if let Some(v) = fields.get(f) {
                    prop_assert!(v.bytes().all(|b| b.is_ascii_digit()), "{:?}={} in {}", f, v, line);
                }
            }
        }
    }
}
