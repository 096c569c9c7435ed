//! The security verdict of an access log: mTLS, rate limiting, authorization, egress.
//! SCHEMA.md's `meshtrail.security.*` table is the contract; each rule below names the
//! Envoy signal it reads.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use crate::envoy::cluster::{self, Direction};
use crate::envoy::{Field, Fields, Flags};

macro_rules! keyword_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $s:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),* }
        impl $name {
            /// Every value, for metric label sets.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// The keyword written to events and metric labels.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),* }
            }
        }
    };
}

keyword_enum!(
    /// `meshtrail.security.outcome`: the first that applies, in this order.
    Outcome {
        /// The TLS handshake failed or a STRICT port refused plaintext.
        MtlsFailure = "mtls_failure",
        /// JWT authentication denied the request (401).
        AuthnDenied = "authn_denied",
        /// RBAC or ext_authz denied it (403).
        AuthzDenied = "authz_denied",
        /// A rate limit refused it, or the rate-limit service failed.
        RateLimited = "rate_limited",
        /// Egress to an unregistered destination was blocked.
        EgressBlocked = "egress_blocked",
        /// The upstream could not be reached or failed.
        UpstreamFailure = "upstream_failure",
        /// None of the above.
        Ok = "ok",
    }
);

keyword_enum!(
    /// `meshtrail.security.mtls`.
    Mtls {
        /// Mutual TLS with a mesh identity.
        Success = "success",
        /// TLS failed.
        Failure = "failure",
        /// No TLS.
        Plaintext = "plaintext",
        /// The format lacks the fields to tell.
        Unknown = "unknown",
    }
);

keyword_enum!(
    /// `meshtrail.security.mtls_failure_reason`.
    MtlsFailureReason {
        /// The peer's certificate has expired.
        CertificateExpired = "certificate_expired",
        /// The peer's certificate did not verify.
        CertificateVerifyFailed = "certificate_verify_failed",
        /// The handshake failed.
        HandshakeFailure = "handshake_failure",
        /// A STRICT mTLS port refused a plaintext connection (`filter_chain_not_found`).
        PlaintextRejected = "plaintext_rejected",
        /// Another TLS error.
        TlsError = "tls_error",
    }
);

keyword_enum!(
    /// `meshtrail.security.rate_limit`.
    RateLimit {
        /// The local rate limit filter.
        Local = "local",
        /// The global rate-limit service.
        Global = "global",
        /// The rate-limit service failed (`RLSE`).
        ServiceError = "service_error",
    }
);

keyword_enum!(
    /// `meshtrail.security.denial.kind`.
    DenialKind {
        /// An RBAC (AuthorizationPolicy) denial.
        Rbac = "rbac",
        /// A JWT (RequestAuthentication) denial.
        Jwt = "jwt",
        /// An external authorization (CUSTOM policy) denial.
        ExtAuthz = "ext_authz",
    }
);

keyword_enum!(
    /// `meshtrail.security.egress`.
    Egress {
        /// Blocked by REGISTRY_ONLY or a `block_all` route.
        Blocked = "blocked",
        /// Left the mesh without a ServiceEntry.
        Passthrough = "passthrough",
        /// Went through an egress gateway.
        Gateway = "gateway",
    }
);

keyword_enum!(
    /// `event.outcome`.
    EventOutcome {
        /// Status below 400 and no failure flag.
        Success = "success",
        /// Anything else that tells.
        Failure = "failure",
        /// Nothing tells.
        Unknown = "unknown",
    }
);

keyword_enum!(
    /// `meshtrail.gateway`: which kind of proxy wrote the line (from Kubernetes metadata).
    Role {
        /// An ingress gateway.
        Ingress = "ingress",
        /// An egress gateway.
        Egress = "egress",
        /// A sidecar.
        Sidecar = "sidecar",
    }
);

/// An authorization or authentication denial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial<'a> {
    /// Which filter denied.
    pub kind: DenialKind,
    /// The RBAC policy that matched (`ns[default]-policy[deny-all]-rule[0]`, or `none`).
    pub policy: Option<&'a str>,
    /// The JWT reason (`Jwt_is_missing`).
    pub reason: Option<&'a str>,
}

/// The security verdict of one access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// `meshtrail.security.outcome`.
    pub outcome: Outcome,
    /// `meshtrail.security.mtls`.
    pub mtls: Mtls,
    /// `meshtrail.security.mtls_failure_reason`.
    pub mtls_failure_reason: Option<MtlsFailureReason>,
    /// `meshtrail.security.rate_limit`.
    pub rate_limit: Option<RateLimit>,
    /// `meshtrail.security.denial.*`.
    pub denial: Option<Denial<'a>>,
    /// `meshtrail.security.egress`.
    pub egress: Option<Egress>,
    /// `event.outcome`.
    pub event_outcome: EventOutcome,
    /// Istio's direction, from the cluster name.
    pub direction: Option<Direction>,
    /// An HTTP request (not a TCP connection).
    pub http: bool,
}

impl Verdict<'_> {
    /// `event.type` holds `denied`.
    pub fn denied(&self) -> bool {
        self.denial.is_some() || self.rate_limit.is_some() || self.egress == Some(Egress::Blocked)
    }

    /// `event.type` holds `error`.
    pub fn error(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::UpstreamFailure | Outcome::MtlsFailure
        )
    }
}

/// Substrings that mark a TLS failure, with prebuilt finders (building one per call would
/// cost more than the search).
static MARKERS: LazyLock<[Finder<'static>; 7]> = LazyLock::new(|| {
    [
        "filter_chain_not_found",
        "TLS",
        "SSL",
        "CERTIFICATE_EXPIRED",
        "CERTIFICATE_VERIFY_FAILED",
        "HANDSHAKE_FAILURE",
        "handshake",
    ]
    .map(|m| Finder::new(m.as_bytes()))
});

fn tls_failure(text: &str) -> Option<MtlsFailureReason> {
    // Every marker holds T, S, C, f or h; most values (`via_upstream`) hold none: skip them.
    let b = text.as_bytes();
    if memchr::memchr3(b'T', b'S', b'C', b).is_none() && memchr::memchr2(b'f', b'h', b).is_none() {
        return None;
    }
    let [chain, tls, ssl, expired, verify, handshake_upper, handshake] = &*MARKERS;
    let has = |f: &Finder<'_>| f.find(text.as_bytes()).is_some();
    if has(chain) {
        return Some(MtlsFailureReason::PlaintextRejected);
    }
    if !(has(tls) || has(ssl) || has(verify) || has(expired)) {
        return None;
    }
    Some(if has(expired) {
        MtlsFailureReason::CertificateExpired
    } else if has(verify) {
        MtlsFailureReason::CertificateVerifyFailed
    } else if has(handshake_upper) || has(handshake) {
        MtlsFailureReason::HandshakeFailure
    } else {
        MtlsFailureReason::TlsError
    })
}

fn mtls(f: &Fields<'_>) -> (Mtls, Option<MtlsFailureReason>) {
    let signals = [
        Field::DownstreamTransportFailureReason,
        Field::UpstreamTransportFailureReason,
        Field::ResponseCodeDetails,
        Field::ConnectionTerminationDetails,
    ];
    if let Some(reason) = signals
        .iter()
        .filter_map(|s| f.get(*s))
        .find_map(tls_failure)
    {
        return (Mtls::Failure, Some(reason));
    }
    if f.get(Field::DownstreamTransportFailureReason).is_some() {
        return (Mtls::Failure, Some(MtlsFailureReason::TlsError));
    }
    let spiffe = |field| {
        f.get(field)
            .is_some_and(|v: &str| v.starts_with("spiffe://"))
    };
    if spiffe(Field::DownstreamPeerUriSan) || spiffe(Field::UpstreamPeerUriSan) {
        return (Mtls::Success, None);
    }
    if f.get(Field::RequestedServerName)
        .and_then(cluster::decode_sni)
        .is_some()
    {
        return (Mtls::Success, None);
    }
    // The format says what the downstream connection carried, and it carried no TLS.
    let no_tls =
        f.carries(Field::DownstreamTlsVersion) && f.get(Field::DownstreamTlsVersion).is_none();
    let inbound_without_sni = f.carries(Field::RequestedServerName)
        && f.get(Field::RequestedServerName).is_none()
        && f.upstream_cluster().and_then(cluster::direction) == Some(Direction::Inbound);
    if no_tls || inbound_without_sni {
        return (Mtls::Plaintext, None);
    }
    (Mtls::Unknown, None)
}

fn rate_limit(flags: Flags, details: Option<&str>) -> Option<RateLimit> {
    if flags.intersects(Flags::RLSE) || details == Some("rate_limiter_error") {
        return Some(RateLimit::ServiceError);
    }
    match details {
        Some("local_rate_limited") => Some(RateLimit::Local),
        Some("request_rate_limited") => Some(RateLimit::Global),
        _ if flags.intersects(Flags::RL) => Some(RateLimit::Global),
        _ => None,
    }
}

fn denial<'a>(
    flags: Flags,
    details: Option<&'a str>,
    termination: Option<&'a str>,
) -> Option<Denial<'a>> {
    for d in [details, termination].into_iter().flatten() {
        if let Some(rest) = d.strip_prefix("rbac_access_denied") {
            let policy = rest
                .strip_prefix("_matched_policy[")
                .map(|p| p.strip_suffix(']').unwrap_or(p));
            return Some(Denial {
                kind: DenialKind::Rbac,
                policy,
                reason: None,
            });
        }
        if let Some(rest) = d.strip_prefix("jwt_authn_access_denied") {
            let reason = rest
                .strip_prefix('{')
                .map(|r| r.strip_suffix('}').unwrap_or(r));
            return Some(Denial {
                kind: DenialKind::Jwt,
                policy: None,
                reason,
            });
        }
        if d.starts_with("ext_authz_denied") || d.starts_with("ext_authz_error") {
            return Some(Denial {
                kind: DenialKind::ExtAuthz,
                policy: None,
                reason: None,
            });
        }
    }
    flags.intersects(Flags::UAEX).then_some(Denial {
        kind: DenialKind::ExtAuthz,
        policy: None,
        reason: None,
    })
}

/// Classifies one access log. `role` is the kind of proxy that wrote it, when known.
pub fn classify<'a>(f: &'a Fields<'_>, role: Option<Role>) -> Verdict<'a> {
    let flags = f.flags();
    let details = f.get(Field::ResponseCodeDetails);
    let status = f.status();
    let upstream = f.upstream_cluster();
    let (mtls, mtls_failure_reason) = mtls(f);
    let rate_limit = rate_limit(flags, details);
    let denial = denial(flags, details, f.get(Field::ConnectionTerminationDetails));
    let blocked = upstream == Some(cluster::BLACK_HOLE)
        || (status == Some(502)
            && details == Some("direct_response")
            && f.get(Field::RouteName) == Some("block_all"));
    let egress = if blocked {
        Some(Egress::Blocked)
    } else if upstream == Some(cluster::PASSTHROUGH) {
        Some(Egress::Passthrough)
    } else if role == Some(Role::Egress) {
        Some(Egress::Gateway)
    } else {
        None
    };
    let upstream_failure = flags.intersects(Flags::UPSTREAM_FAILURE);
    let outcome = if mtls == Mtls::Failure {
        Outcome::MtlsFailure
    } else if let Some(d) = denial {
        if d.kind == DenialKind::Jwt {
            Outcome::AuthnDenied
        } else {
            Outcome::AuthzDenied
        }
    } else if rate_limit.is_some() {
        Outcome::RateLimited
    } else if blocked {
        Outcome::EgressBlocked
    } else if upstream_failure {
        Outcome::UpstreamFailure
    } else {
        Outcome::Ok
    };
    let failed_flags = flags.intersects(Flags::FAILURE);
    let event_outcome = match status {
        Some(code) if code < 400 && !failed_flags && outcome == Outcome::Ok => {
            EventOutcome::Success
        }
        Some(_) => EventOutcome::Failure,
        None if failed_flags || outcome != Outcome::Ok => EventOutcome::Failure,
        None if f.int(Field::BytesReceived).unwrap_or(0) + f.int(Field::BytesSent).unwrap_or(0)
            > 0 =>
        {
            EventOutcome::Success
        }
        None => EventOutcome::Unknown,
    };
    let direction = match upstream {
        Some(cluster::BLACK_HOLE | cluster::PASSTHROUGH) => Some(Direction::Outbound),
        Some(name) => cluster::direction(name),
        None => None,
    };
    Verdict {
        outcome,
        mtls,
        mtls_failure_reason,
        rate_limit,
        denial,
        egress,
        event_outcome,
        direction,
        http: !f.is_tcp(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::{Hint, Parsed, Parser};

    /// Classifies a line of any built-in format.
    fn verdict(line: &str, role: Option<Role>) -> Verdict<'static> {
        let parser: &'static Parser = Box::leak(Box::new(Parser::auto()));
        let line: &'static str = Box::leak(line.to_owned().into_boxed_str());
        match parser.parse(line, &mut Hint::default()) {
            Parsed::Access { fields, .. } => classify(Box::leak(Box::new(fields)), role),
            Parsed::Other(why) => panic!("not parsed: {why:?}"),
        }
    }

    fn istio19(
        code: u16,
        flags: &str,
        details: &str,
        utfr: &str,
        cluster: &str,
        sni: &str,
        route: &str,
    ) -> String {
        format!(
            r#"[2026-11-22T10:00:00.000Z] "GET /p HTTP/1.1" {code} {flags} {details} - "{utfr}" 10 20 5 - "-" "curl" "id" "host" "10.0.0.1:8080" {cluster} 10.0.0.2:5000 10.0.0.3:8080 10.0.0.4:40000 {sni} {route}"#
        )
    }

    const OUT: &str = "outbound|8080||payment.default.svc.cluster.local";
    const IN: &str = "inbound|8080||";
    const MTLS_SNI: &str = "outbound_.8080_._.payment.default.svc.cluster.local";

    #[test]
    fn ok_request_over_mtls() {
        let v = verdict(
            &istio19(200, "-", "via_upstream", "-", IN, MTLS_SNI, "default"),
            Some(Role::Sidecar),
        );
        assert_eq!(
            (v.outcome, v.mtls, v.event_outcome, v.direction),
            (
                Outcome::Ok,
                Mtls::Success,
                EventOutcome::Success,
                Some(Direction::Inbound)
            )
        );
        assert!(!v.denied() && !v.error() && v.http);
    }

    #[test]
    fn plaintext_inbound() {
        let v = verdict(
            &istio19(200, "-", "via_upstream", "-", IN, "-", "default"),
            None,
        );
        assert_eq!(v.mtls, Mtls::Plaintext);
        let v = verdict(
            &istio19(200, "-", "via_upstream", "-", OUT, "-", "default"),
            None,
        );
        assert_eq!(
            v.mtls,
            Mtls::Unknown,
            "the default format cannot tell for outbound"
        );
    }

    #[test]
    fn mtls_failures_by_reason() {
        let cases = [
            (
                "TLS error: 268435581:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED",
                MtlsFailureReason::CertificateVerifyFailed,
            ),
            (
                "TLS error: 268436501:SSL routines:OPENSSL_internal:SSLV3_ALERT_CERTIFICATE_EXPIRED",
                MtlsFailureReason::CertificateExpired,
            ),
            (
                "TLS error: 268435616:SSL routines:OPENSSL_internal:SSLV3_ALERT_HANDSHAKE_FAILURE",
                MtlsFailureReason::HandshakeFailure,
            ),
            (
                "TLS error: Secret is not supplied by SDS",
                MtlsFailureReason::TlsError,
            ),
        ];
        for (utfr, reason) in cases {
            let v = verdict(
                &istio19(
                    503,
                    "UF,URX",
                    "upstream_reset_before_response_started{connection_failure}",
                    utfr,
                    OUT,
                    "-",
                    "default",
                ),
                None,
            );
            assert_eq!(
                (v.outcome, v.mtls, v.mtls_failure_reason),
                (Outcome::MtlsFailure, Mtls::Failure, Some(reason)),
                "{utfr}"
            );
            assert!(v.error());
        }
        let v = verdict(
            &istio19(0, "NR", "filter_chain_not_found", "-", "-", "-", "-"),
            None,
        );
        assert_eq!(
            (v.outcome, v.mtls_failure_reason),
            (
                Outcome::MtlsFailure,
                Some(MtlsFailureReason::PlaintextRejected)
            )
        );
        let v = verdict(
            &istio19(
                503,
                "UF",
                "upstream_reset_before_response_started{connection_failure,delayed_connect_error:_111}",
                "delayed connect error: 111",
                OUT,
                "-",
                "-",
            ),
            None,
        );
        assert_eq!(
            (v.outcome, v.mtls),
            (Outcome::UpstreamFailure, Mtls::Unknown)
        );
    }

    #[test]
    fn rate_limits() {
        let v = verdict(
            &istio19(429, "RL", "local_rate_limited", "-", IN, "-", "-"),
            None,
        );
        assert_eq!(
            (v.outcome, v.rate_limit, v.event_outcome),
            (
                Outcome::RateLimited,
                Some(RateLimit::Local),
                EventOutcome::Failure
            )
        );
        assert!(v.denied());
        let v = verdict(
            &istio19(429, "RL", "request_rate_limited", "-", IN, "-", "-"),
            None,
        );
        assert_eq!(v.rate_limit, Some(RateLimit::Global));
        let v = verdict(&istio19(429, "RL", "-", "-", IN, "-", "-"), None);
        assert_eq!(v.rate_limit, Some(RateLimit::Global));
        let v = verdict(
            &istio19(500, "RLSE", "rate_limiter_error", "-", IN, "-", "-"),
            None,
        );
        assert_eq!(v.rate_limit, Some(RateLimit::ServiceError));
        let v = verdict(&istio19(429, "-", "via_upstream", "-", OUT, "-", "-"), None);
        assert_eq!(
            (v.rate_limit, v.outcome),
            (None, Outcome::Ok),
            "a 429 from the application is not the mesh's"
        );
    }

    #[test]
    fn denials() {
        let v = verdict(
            &istio19(
                403,
                "-",
                "rbac_access_denied_matched_policy[ns[default]-policy[deny-ips]-rule[0]]",
                "-",
                IN,
                MTLS_SNI,
                "-",
            ),
            None,
        );
        assert_eq!(
            (v.outcome, v.denial),
            (
                Outcome::AuthzDenied,
                Some(Denial {
                    kind: DenialKind::Rbac,
                    policy: Some("ns[default]-policy[deny-ips]-rule[0]"),
                    reason: None
                })
            )
        );
        let v = verdict(
            &istio19(
                403,
                "-",
                "rbac_access_denied_matched_policy[none]",
                "-",
                IN,
                "-",
                "-",
            ),
            None,
        );
        assert_eq!(v.denial.and_then(|d| d.policy), Some("none"));
        let v = verdict(
            &istio19(
                401,
                "-",
                "jwt_authn_access_denied{Jwt_is_missing}",
                "-",
                IN,
                "-",
                "-",
            ),
            None,
        );
        assert_eq!(
            (v.outcome, v.denial.and_then(|d| d.reason)),
            (Outcome::AuthnDenied, Some("Jwt_is_missing"))
        );
        let v = verdict(
            &istio19(403, "UAEX", "ext_authz_denied", "-", IN, "-", "-"),
            None,
        );
        assert_eq!(
            (v.outcome, v.denial.map(|d| d.kind)),
            (Outcome::AuthzDenied, Some(DenialKind::ExtAuthz))
        );
        let v = verdict(
            &istio19(0, "-", "-", "-", IN, "-", "-").replace(
                "] \"GET /p HTTP/1.1\" 0 - - -",
                "] \"- - -\" 0 - - rbac_access_denied_matched_policy[none]",
            ),
            None,
        );
        assert_eq!(
            v.denial.map(|d| d.kind),
            Some(DenialKind::Rbac),
            "TCP RBAC is in the termination details"
        );
    }

    #[test]
    fn egress() {
        let v = verdict(
            &istio19(502, "-", "-", "-", "BlackHoleCluster", "-", "-"),
            None,
        );
        assert_eq!(
            (v.outcome, v.egress, v.direction),
            (
                Outcome::EgressBlocked,
                Some(Egress::Blocked),
                Some(Direction::Outbound)
            )
        );
        let v = verdict(
            &istio19(502, "-", "direct_response", "-", "-", "-", "block_all"),
            None,
        );
        assert_eq!(v.egress, Some(Egress::Blocked));
        let v = verdict(
            &istio19(
                200,
                "-",
                "via_upstream",
                "-",
                "PassthroughCluster",
                "-",
                "allow_any",
            ),
            None,
        );
        assert_eq!(
            (v.outcome, v.egress),
            (Outcome::Ok, Some(Egress::Passthrough))
        );
        let v = verdict(
            &istio19(200, "-", "via_upstream", "-", OUT, "-", "-"),
            Some(Role::Egress),
        );
        assert_eq!(v.egress, Some(Egress::Gateway));
    }

    #[test]
    fn tcp_outcomes() {
        let tcp = r#"[2026-11-22T10:00:00.000Z] "- - -" 0 - - - "-" 200 3000 40 - "-" "-" "-" "-" "151.101.65.67:443" outbound|443||api.example.com 10.0.0.2:41122 10.0.0.3:443 10.0.0.4:5000 api.example.com -"#;
        let v = verdict(tcp, None);
        assert_eq!(
            (v.http, v.event_outcome, v.outcome),
            (false, EventOutcome::Success, Outcome::Ok)
        );
        let v = verdict(&tcp.replace("0 - - -", "0 UF,URX - -"), None);
        assert_eq!(
            (v.event_outcome, v.outcome),
            (EventOutcome::Failure, Outcome::UpstreamFailure)
        );
    }

    #[test]
    fn meshtrail_format_tells_mtls_from_plaintext() {
        let base = istio19(200, "-", "via_upstream", "-", OUT, "-", "-");
        let with = |tls: &str, peer: &str| {
            format!(r#"{base} tls={tls} cipher=- peer="{peer}" upstream_peer="-" dtfr="-""#)
        };
        let v = verdict(
            &with("TLSv1.3", "spiffe://cluster.local/ns/default/sa/sleep"),
            None,
        );
        assert_eq!(v.mtls, Mtls::Success);
        let v = verdict(&with("-", "-"), None);
        assert_eq!(v.mtls, Mtls::Plaintext);
        let v = verdict(
            &format!(
                r#"{base} tls=- cipher=- peer="-" upstream_peer="-" dtfr="TLS_error:|268435703:SSL_routines:OPENSSL_internal:WRONG_VERSION_NUMBER""#
            ),
            None,
        );
        assert_eq!(
            (v.mtls, v.mtls_failure_reason),
            (Mtls::Failure, Some(MtlsFailureReason::TlsError))
        );
    }
}
