//! Addresses as Envoy writes them: `10.0.0.1:80`, `[2406:da24::14]:443`, a Unix socket
//! path, `envoy://internal_listener/`.

use std::net::IpAddr;

/// The IP and port of an `ip:port` or `[ipv6]:port` address; `None` for anything else.
pub fn ip_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:")?;
        (ip, port)
    } else {
        // The port is the last few bytes: a backward byte loop beats `memrchr`'s set-up.
        let colon = addr.bytes().rposition(|b| b == b':')?;
        (&addr[..colon], &addr[colon + 1..])
    };
    let port = port.parse().ok()?;
    is_ip(host).then_some((host, port))
}

/// A dotted-quad IPv4 address, checked in one pass over the bytes without the general
/// parser (this runs twice per access log). As `std` does: four decimal octets up to 255,
/// no leading zeros.
fn is_ipv4(s: &str) -> bool {
    let (mut dots, mut value, mut digits, mut leading_zero) = (0u32, 0u32, 0u32, false);
    for &c in s.as_bytes() {
        if c == b'.' {
            if digits == 0 || dots == 3 {
                return false;
            }
            (dots, value, digits, leading_zero) = (dots + 1, 0, 0, false);
        } else if c.is_ascii_digit() {
            if leading_zero {
                return false;
            }
            leading_zero = digits == 0 && c == b'0';
            value = value * 10 + u32::from(c - b'0');
            digits += 1;
            if value > 255 {
                return false;
            }
        } else {
            return false;
        }
    }
    dots == 3 && digits > 0
}

/// True when `s` is an IP address (v4 or v6, without port).
pub fn is_ip(s: &str) -> bool {
    // Every IPv6 address has a colon, no IPv4 address has one.
    is_ipv4(s) || (s.contains(':') && s.parse::<IpAddr>().is_ok())
}

/// Host and optional port of an HTTP authority: `httpbin:8000`, `[::1]:8080`, `example.com`.
pub fn host_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (authority, None),
        },
        _ => (authority, None),
    }
}

/// The first entry of an `X-Forwarded-For` list when it is an IP address.
pub fn first_forwarded_ip(xff: &str) -> Option<&str> {
    let first = xff.split(',').next()?.trim();
    is_ip(first).then_some(first)
}

/// True when `s` could be an address Envoy writes: used to tell a real field from text
/// that landed in its place.
/// This is a shape check, not a parse: it runs on every address of every line.
pub fn plausible(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(b'/' | b'@') => true,
        Some(_) => {
            // `host:port`: digits back to a colon that is not the first byte.
            let digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
            (digits > 0 && b.len() > digits + 1 && b[b.len() - digits - 1] == b':')
                || s.contains("://")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn ipv4_agrees_with_std(s in "[0-9.]{0,16}") {
            proptest::prop_assert_eq!(is_ipv4(&s), s.parse::<std::net::Ipv4Addr>().is_ok(), "{}", s);
        }

        #[test]
        fn ip_agrees_with_std(s in "[0-9a-f.:]{0,24}") {
            proptest::prop_assert_eq!(is_ip(&s), s.parse::<IpAddr>().is_ok(), "{}", s);
        }
    }

    #[test]
    fn ipv4_edges_agree_with_std() {
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.1.1.1",
            "1.1.1.01",
            "1.1.1",
            "1.1.1.1.",
            ".1.1.1.1",
            "1..1.1",
            "1.1.1.1.1",
            "10.0.0.00",
            "1000.1.1.1",
            "",
        ] {
            assert_eq!(is_ipv4(s), s.parse::<std::net::Ipv4Addr>().is_ok(), "{s}");
        }
    }

    #[test]
    fn splits_ip_and_port() {
        assert_eq!(ip_port("10.44.1.27:80"), Some(("10.44.1.27", 80)));
        assert_eq!(ip_port("[2406:da24::14]:443"), Some(("2406:da24::14", 443)));
        assert_eq!(ip_port("envoy://sni_listener/"), None);
        assert_eq!(ip_port("/var/run/sock"), None);
        assert_eq!(ip_port("host:80"), None);
        assert_eq!(ip_port("10.0.0.1:99999"), None);
        for bad in [
            "10.0.0",
            "10.0.0.256",
            "10.0.0.1.2",
            "010.0.0.1",
            "1..2.3",
            "",
            "1.2.3.4.",
        ] {
            assert!(!is_ip(bad), "{bad}");
        }
        for good in [
            "0.0.0.0",
            "255.255.255.255",
            "10.44.1.27",
            "::1",
            "2406:da24::14",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_ip(good), "{good}");
            assert_eq!(is_ip(good), good.parse::<IpAddr>().is_ok(), "{good}");
        }
    }

    #[test]
    fn authorities() {
        assert_eq!(host_port("httpbin:8000"), ("httpbin", Some(8000)));
        assert_eq!(host_port("example.com"), ("example.com", None));
        assert_eq!(host_port("[::1]:8080"), ("::1", Some(8080)));
        assert_eq!(host_port("::1"), ("::1", None));
        assert_eq!(host_port("a:b"), ("a:b", None));
    }

    #[test]
    fn forwarded_for() {
        assert_eq!(first_forwarded_ip("192.168.0.24"), Some("192.168.0.24"));
        assert_eq!(first_forwarded_ip("10.0.0.1, 10.0.0.2"), Some("10.0.0.1"));
        assert_eq!(first_forwarded_ip("unknown, 10.0.0.2"), None);
    }

    #[test]
    fn plausibility() {
        for ok in [
            "10.0.0.1:80",
            "[::1]:1",
            "/tmp/s",
            "@abstract",
            "envoy://x/",
            "REDACTED_IP1:7600",
        ] {
            assert!(plausible(ok), "{ok}");
        }
        for bad in ["MongoDB", "port>||x", "", ":80", "a:"] {
            assert!(!plausible(bad), "{bad}");
        }
    }
}
