//! The access-log fields meshtrail understands, and how an operator maps to one.
//!
//! A field is named by Istio's JSON key (the snake_case of the operator). Operators that
//! are not in this table are kept under their own snake_case name ([`extra_name`]).

use super::format::Operator;

/// What a field's value may look like; used to validate a match and to split a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An RFC 3339 timestamp.
    Timestamp,
    /// Digits.
    Integer,
    /// Upper-case method name.
    Method,
    /// `HTTP/…`.
    Protocol,
    /// Comma-separated response flags.
    Flags,
    /// An address (`ip:port`, `[v6]:port`, a path, `envoy://…`).
    Address,
    /// Any text without white space.
    Token,
    /// Any text, white space and quotes included (header values, failure reasons).
    Text,
}

macro_rules! fields {
    ($( $(#[$doc:meta])* $variant:ident = $key:literal : $kind:ident ),* $(,)?) => {
        /// A known access-log field.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Field { $( $(#[$doc])* $variant ),* }

        impl Field {
            /// Every field, in declaration order.
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];
            /// How many fields there are.
            pub const COUNT: usize = Self::ALL.len();

            /// Istio's JSON key for the field, e.g. `response_code`.
            pub const fn key(self) -> &'static str {
                match self { $(Field::$variant => $key),* }
            }

            /// What the field's value may look like.
            pub const fn kind(self) -> Kind {
                match self { $(Field::$variant => Kind::$kind),* }
            }

            /// The field with this Istio JSON key.
            pub fn from_key(key: &str) -> Option<Field> {
                match key { $($key => Some(Field::$variant),)* _ => None }
            }
        }
    };
}

fields! {
    /// `%START_TIME%`.
    StartTime = "start_time": Timestamp,
    /// `%REQ(:METHOD)%`.
    Method = "method": Method,
    /// `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`.
    Path = "path": Token,
    /// `%PROTOCOL%`.
    Protocol = "protocol": Protocol,
    /// `%RESPONSE_CODE%`.
    ResponseCode = "response_code": Integer,
    /// `%RESPONSE_FLAGS%` or `%RESPONSE_FLAGS_LONG%`.
    ResponseFlags = "response_flags": Flags,
    /// `%RESPONSE_CODE_DETAILS%`.
    ResponseCodeDetails = "response_code_details": Token,
    /// `%CONNECTION_TERMINATION_DETAILS%`.
    ConnectionTerminationDetails = "connection_termination_details": Token,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    UpstreamTransportFailureReason = "upstream_transport_failure_reason": Text,
    /// `%DOWNSTREAM_TRANSPORT_FAILURE_REASON%`.
    DownstreamTransportFailureReason = "downstream_transport_failure_reason": Text,
    /// `%BYTES_RECEIVED%`.
    BytesReceived = "bytes_received": Integer,
    /// `%BYTES_SENT%`.
    BytesSent = "bytes_sent": Integer,
    /// `%DURATION%`, milliseconds.
    Duration = "duration": Integer,
    /// `%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%`, milliseconds.
    UpstreamServiceTime = "upstream_service_time": Integer,
    /// `%REQ(X-FORWARDED-FOR)%`.
    XForwardedFor = "x_forwarded_for": Text,
    /// `%REQ(USER-AGENT)%`.
    UserAgent = "user_agent": Text,
    /// `%REQ(X-REQUEST-ID)%`.
    RequestId = "request_id": Text,
    /// `%REQ(:AUTHORITY)%`.
    Authority = "authority": Text,
    /// `%UPSTREAM_HOST%`.
    UpstreamHost = "upstream_host": Address,
    /// `%UPSTREAM_CLUSTER%` or `%UPSTREAM_CLUSTER_RAW%`.
    UpstreamCluster = "upstream_cluster": Token,
    /// `%UPSTREAM_LOCAL_ADDRESS%`.
    UpstreamLocalAddress = "upstream_local_address": Address,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`.
    DownstreamLocalAddress = "downstream_local_address": Address,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    DownstreamRemoteAddress = "downstream_remote_address": Address,
    /// `%REQUESTED_SERVER_NAME%` (SNI).
    RequestedServerName = "requested_server_name": Token,
    /// `%ROUTE_NAME%`.
    RouteName = "route_name": Token,
    /// `%DOWNSTREAM_TLS_VERSION%`.
    DownstreamTlsVersion = "downstream_tls_version": Token,
    /// `%DOWNSTREAM_TLS_CIPHER%`.
    DownstreamTlsCipher = "downstream_tls_cipher": Token,
    /// `%DOWNSTREAM_PEER_URI_SAN%`.
    DownstreamPeerUriSan = "downstream_peer_uri_san": Text,
    /// `%UPSTREAM_PEER_URI_SAN%`.
    UpstreamPeerUriSan = "upstream_peer_uri_san": Text,
    /// `%DYNAMIC_METADATA(istio.mixer:status)%` (Istio 1.1–1.7).
    IstioPolicyStatus = "istio_policy_status": Text,
}

/// What an operator of a format string fills.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A known field.
    Known(Field),
    /// An operator meshtrail has no field for, kept under this snake_case name.
    Extra(String),
}

impl Target {
    /// The kind of value the operator writes.
    pub fn kind(&self) -> Kind {
        match self {
            Target::Known(f) => f.kind(),
            Target::Extra(_) => Kind::Text,
        }
    }
}

/// Maps an operator to the field it fills.
pub fn target(op: &Operator) -> Target {
    let arg = op.arg.as_deref().map(str::to_ascii_uppercase);
    let field = match (op.name.as_str(), arg.as_deref()) {
        ("START_TIME", None) => Some(Field::StartTime),
        ("REQ", Some(":METHOD")) => Some(Field::Method),
        ("REQ", Some("X-ENVOY-ORIGINAL-PATH?:PATH" | ":PATH" | "X-ENVOY-ORIGINAL-PATH?PATH")) => {
            Some(Field::Path)
        }
        ("REQ", Some("X-FORWARDED-FOR")) => Some(Field::XForwardedFor),
        ("REQ", Some("USER-AGENT")) => Some(Field::UserAgent),
        ("REQ", Some("X-REQUEST-ID")) => Some(Field::RequestId),
        ("REQ", Some(":AUTHORITY")) => Some(Field::Authority),
        ("RESP", Some("X-ENVOY-UPSTREAM-SERVICE-TIME")) => Some(Field::UpstreamServiceTime),
        ("DYNAMIC_METADATA", Some("ISTIO.MIXER:STATUS")) => Some(Field::IstioPolicyStatus),
        ("PROTOCOL", None) => Some(Field::Protocol),
        ("RESPONSE_CODE", None) => Some(Field::ResponseCode),
        ("RESPONSE_FLAGS" | "RESPONSE_FLAGS_LONG", None) => Some(Field::ResponseFlags),
        ("RESPONSE_CODE_DETAILS", None) => Some(Field::ResponseCodeDetails),
        ("CONNECTION_TERMINATION_DETAILS", None) => Some(Field::ConnectionTerminationDetails),
        ("UPSTREAM_TRANSPORT_FAILURE_REASON", None) => Some(Field::UpstreamTransportFailureReason),
        ("DOWNSTREAM_TRANSPORT_FAILURE_REASON", None) => {
            Some(Field::DownstreamTransportFailureReason)
        }
        ("BYTES_RECEIVED", None) => Some(Field::BytesReceived),
        ("BYTES_SENT", None) => Some(Field::BytesSent),
        ("DURATION", None) => Some(Field::Duration),
        ("UPSTREAM_HOST", None) => Some(Field::UpstreamHost),
        ("UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW", None) => Some(Field::UpstreamCluster),
        ("UPSTREAM_LOCAL_ADDRESS", None) => Some(Field::UpstreamLocalAddress),
        ("DOWNSTREAM_LOCAL_ADDRESS", None) => Some(Field::DownstreamLocalAddress),
        ("DOWNSTREAM_REMOTE_ADDRESS", None) => Some(Field::DownstreamRemoteAddress),
        ("REQUESTED_SERVER_NAME", None) => Some(Field::RequestedServerName),
        ("ROUTE_NAME", None) => Some(Field::RouteName),
        ("DOWNSTREAM_TLS_VERSION", None) => Some(Field::DownstreamTlsVersion),
        ("DOWNSTREAM_TLS_CIPHER", None) => Some(Field::DownstreamTlsCipher),
        ("DOWNSTREAM_PEER_URI_SAN", None) => Some(Field::DownstreamPeerUriSan),
        ("UPSTREAM_PEER_URI_SAN", None) => Some(Field::UpstreamPeerUriSan),
        _ => None,
    };
    match field {
        Some(f) => Target::Known(f),
        None => Target::Extra(extra_name(op)),
    }
}

/// The snake_case name of an operator without a field: `%REQ(X-B3-TRACEID)%` →
/// `req_x_b3_traceid`, `%UPSTREAM_TLS_VERSION%` → `upstream_tls_version`.
pub fn extra_name(op: &Operator) -> String {
    let mut name = op.name.to_ascii_lowercase();
    if let Some(arg) = &op.arg {
        name.push('_');
        for c in arg.chars() {
            if c.is_ascii_alphanumeric() {
                name.push(c.to_ascii_lowercase());
            } else if !name.ends_with('_') {
                name.push('_');
            }
        }
        while name.ends_with('_') {
            name.pop();
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::format::{Token, tokenize};

    fn t(s: &str) -> Target {
        match tokenize(s).unwrap().remove(0) {
            Token::Operator(o) => target(&o),
            Token::Literal(_) => panic!("not an operator"),
        }
    }

    #[test]
    fn keys_are_unique_and_round_trip() {
        for f in Field::ALL {
            assert_eq!(Field::from_key(f.key()), Some(*f));
        }
        assert_eq!(Field::COUNT, Field::ALL.len());
    }

    #[test]
    fn operators_map_to_fields() {
        assert_eq!(t("%REQ(:METHOD)%"), Target::Known(Field::Method));
        assert_eq!(t("%REQ(user-agent)%"), Target::Known(Field::UserAgent));
        assert_eq!(
            t("%UPSTREAM_CLUSTER_RAW%"),
            Target::Known(Field::UpstreamCluster)
        );
        assert_eq!(
            t("%RESPONSE_FLAGS_LONG%"),
            Target::Known(Field::ResponseFlags)
        );
        assert_eq!(
            t("%DYNAMIC_METADATA(istio.mixer:status)%"),
            Target::Known(Field::IstioPolicyStatus)
        );
        assert_eq!(t("%START_TIME(%s)%"), Target::Extra("start_time_s".into()));
        assert_eq!(
            t("%REQ(X-B3-TRACEID)%"),
            Target::Extra("req_x_b3_traceid".into())
        );
        assert_eq!(
            t("%UPSTREAM_TLS_VERSION%"),
            Target::Extra("upstream_tls_version".into())
        );
        assert_eq!(
            t("%FILTER_STATE(a.b:PLAIN)%"),
            Target::Extra("filter_state_a_b_plain".into())
        );
    }
}
