//! What the public corpus lacks (corpus/README.md's list), built from the format strings.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use meshtrail_parsers::classify::{self, DenialKind, Mtls, Outcome, RateLimit};
use meshtrail_parsers::envoy::{Field, Hint, Parsed, Parser, Program, builtin};

fn line(format: &str, values: &[(&str, &str)]) -> String {
    let program = Program::compile("t", format).unwrap();
    program.render(|key| {
        values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .or(match key {
                "start_time" => Some("2026-11-24T10:00:00.123Z"),
                "method" => Some("GET"),
                "path" => Some("/orders"),
                "protocol" => Some("HTTP/2"),
                "response_code" => Some("200"),
                "bytes_received" => Some("10"),
                "bytes_sent" => Some("20"),
                "duration" => Some("3"),
                "downstream_remote_address" => Some("10.0.0.9:41000"),
                _ => None,
            })
    })
}

fn read(
    parser: &Parser,
    line: &str,
    check: impl FnOnce(&str, &meshtrail_parsers::envoy::Fields<'_>),
) {
    match parser.parse(line, &mut Hint::default()) {
        Parsed::Access { format, fields } => check(format, &fields),
        Parsed::Other(why) => panic!("not read: {why:?}\n{line}"),
    }
}

#[test]
fn global_rate_limit_and_service_error() {
    let p = Parser::auto();
    let l = line(
        builtin::ISTIO_1_9,
        &[
            ("response_code", "429"),
            ("response_flags", "RL"),
            ("response_code_details", "request_rate_limited"),
        ],
    );
    read(&p, &l, |fmt, f| {
        assert_eq!(fmt, "istio-1.9");
        let v = classify::classify(f, None);
        assert_eq!(
            (v.outcome, v.rate_limit),
            (Outcome::RateLimited, Some(RateLimit::Global))
        );
    });
    let l = line(
        builtin::ISTIO_1_9,
        &[
            ("response_code", "500"),
            ("response_flags", "RLSE"),
            ("response_code_details", "rate_limiter_error"),
        ],
    );
    read(&p, &l, |_, f| {
        assert_eq!(
            classify::classify(f, None).rate_limit,
            Some(RateLimit::ServiceError)
        )
    });
}

#[test]
fn rbac_named_policy() {
    let l = line(
        builtin::ISTIO_1_9,
        &[
            ("response_code", "403"),
            (
                "response_code_details",
                "rbac_access_denied_matched_policy[ns[prod]-policy[deny-scanners]-rule[2]]",
            ),
        ],
    );
    read(&Parser::auto(), &l, |_, f| {
        let d = classify::classify(f, None).denial.unwrap();
        assert_eq!(
            (d.kind, d.policy),
            (
                DenialKind::Rbac,
                Some("ns[prod]-policy[deny-scanners]-rule[2]")
            )
        );
    });
}

#[test]
fn peer_identity_and_tls_version() {
    let l = line(
        builtin::MESHTRAIL,
        &[
            ("downstream_tls_version", "TLSv1.3"),
            ("downstream_tls_cipher", "TLS_AES_256_GCM_SHA384"),
            (
                "downstream_peer_uri_san",
                "spiffe://cluster.local/ns/shop/sa/web",
            ),
            (
                "upstream_peer_uri_san",
                "spiffe://cluster.local/ns/shop/sa/payment",
            ),
        ],
    );
    read(&Parser::auto(), &l, |fmt, f| {
        assert_eq!(fmt, "meshtrail");
        assert_eq!(
            f.get(Field::DownstreamPeerUriSan),
            Some("spiffe://cluster.local/ns/shop/sa/web")
        );
        assert_eq!(
            f.get(Field::DownstreamTlsCipher),
            Some("TLS_AES_256_GCM_SHA384")
        );
        assert_eq!(classify::classify(f, None).mtls, Mtls::Success);
    });
}

#[test]
fn ipv6_everywhere() {
    let l = line(
        builtin::ISTIO_1_9,
        &[
            ("upstream_host", "[2406:da24::14]:443"),
            ("downstream_remote_address", "[fd00::1]:51000"),
            ("downstream_local_address", "[fd00::2]:8443"),
            ("requested_server_name", "outbound_.443_._.v6.example.com"),
            ("authority", "[2406:da24::14]:443"),
        ],
    );
    read(&Parser::auto(), &l, |_, f| {
        assert_eq!(f.get(Field::UpstreamHost), Some("[2406:da24::14]:443"));
        assert_eq!(
            f.get(Field::DownstreamRemoteAddress),
            Some("[fd00::1]:51000")
        );
        assert_eq!(
            f.get(Field::RequestedServerName),
            Some("outbound_.443_._.v6.example.com")
        );
    });
}

#[test]
fn ambient_mode() {
    let p = Parser::auto();
    // A waypoint is an Envoy writing Istio's format: it reads as one.
    let waypoint = line(
        builtin::ISTIO_1_9,
        &[
            (
                "upstream_cluster",
                "inbound-vip|8080|http|reviews.default.svc.cluster.local",
            ),
            ("route_name", "default"),
        ],
    );
    read(&p, &waypoint, |fmt, f| {
        assert_eq!(fmt, "istio-1.9");
        assert_eq!(
            f.upstream_cluster(),
            Some("inbound-vip|8080|http|reviews.default.svc.cluster.local")
        );
    });
    // ztunnel writes its own key=value access log: a container line, never mis-read.
    let ztunnel = "2024-05-06T17:25:59.281963Z\tinfo\taccess\tconnection complete\tsrc.addr=10.244.1.7:39318 src.workload=sleep-7656cf8794-r7zb9 src.namespace=default dst.addr=10.244.1.6:15008 dst.hbone_addr=10.96.12.3:8000 direction=\"outbound\" bytes_sent=84 bytes_recv=241 duration=\"2ms\"";
    assert!(matches!(
        p.parse(ztunnel, &mut Hint::default()),
        Parsed::Other(None)
    ));
}

#[test]
fn custom_format_with_labels_and_json_and_auto_fallback() {
    let custom = r#"%START_TIME% status=%RESPONSE_CODE% dur=%DURATION% trace=%REQ(X-B3-TRACEID)% ua="%REQ(USER-AGENT)%""#;
    let p = Parser::from_specs([custom, "auto"]).unwrap();
    read(
        &p,
        r#"2026-11-24T10:00:00.123Z status=503 dur=12 trace=80f198ee56343ba8 ua="a "quoted" agent""#,
        |fmt, f| {
            assert_eq!(fmt, "custom");
            assert_eq!(
                (f.status(), f.get(Field::UserAgent)),
                (Some(503), Some(r#"a "quoted" agent"#))
            );
            assert_eq!(
                f.extras().collect::<Vec<_>>(),
                [("req_x_b3_traceid", "80f198ee56343ba8")]
            );
        },
    );
    // The same parser still reads Istio's defaults after the custom format.
    read(&p, &line(builtin::ENVOY_DEFAULT, &[]), |fmt, _| {
        assert_eq!(fmt, "envoy-default")
    });
}

#[test]
fn broken_lines_say_why_and_lines_of_other_programs_do_not() {
    let p = Parser::auto();
    let Parsed::Other(Some(why)) = p.parse(
        r#"[2026-11-24T10:00:00.123Z] "GET / HTTP/1.1" 2OO - via_upstream"#,
        &mut Hint::default(),
    ) else {
        panic!()
    };
    assert_eq!(why.code(), "format_mismatch");
    assert!(why.to_string().contains("%RESPONSE_CODE%"), "{why}");
    for other in [
        "[2022-04-02 18:29:55.979][1][info][upstream] cds: add 0 cluster(s)",
        "hello",
        "",
        "{\"level\":\"info\"}",
    ] {
        assert!(
            matches!(p.parse(other, &mut Hint::default()), Parsed::Other(None)),
            "{other}"
        );
    }
    let Parsed::Other(Some(why)) = p.parse(
        r#"{"start_time":"2026-11-24T10:00:00.123Z","response_code":"x","method":"GET"}"#,
        &mut Hint::default(),
    ) else {
        panic!()
    };
    assert_eq!(why.code(), "invalid_json");
}

#[test]
fn bad_format_names_and_strings_are_refused_with_the_fix() {
    let e = Parser::from_specs(["istio-1.10"]).unwrap_err().to_string();
    assert!(
        e.contains("unknown format \"istio-1.10\"") && e.contains("istio-1.9"),
        "{e}"
    );
    let e = Parser::from_specs(["%DURATION%%BYTES_SENT%"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("put a separator"), "{e}");
}
