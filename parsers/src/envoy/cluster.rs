//! Istio's cluster names (`outbound|443||api.example.com`) and mTLS SNI
//! (`outbound_.8080_._.reviews.default.svc.cluster.local`).

/// Traffic direction as Istio names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Into the workload next to the proxy.
    Inbound,
    /// Out of it.
    Outbound,
}

impl Direction {
    /// `inbound` or `outbound`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// An Istio cluster name split into its parts; absent parts are `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IstioCluster<'a> {
    /// `inbound` or `outbound`.
    pub direction: Direction,
    /// The service port.
    pub port: Option<u16>,
    /// The subset (outbound) or, in Istio releases before 1.6, the port name (inbound).
    pub subset: Option<&'a str>,
    /// The service host.
    pub host: Option<&'a str>,
}

/// The `BlackHoleCluster`: REGISTRY_ONLY blocked the destination.
pub const BLACK_HOLE: &str = "BlackHoleCluster";
/// The `PassthroughCluster`: the destination had no ServiceEntry and ALLOW_ANY let it out.
pub const PASSTHROUGH: &str = "PassthroughCluster";

/// Decodes `direction|port|subset|host`; `None` for other names (`BlackHoleCluster`,
/// non-Istio clusters).
pub fn decode(name: &str) -> Option<IstioCluster<'_>> {
    let (direction, rest) = if let Some(rest) = name.strip_prefix("outbound|") {
        (Direction::Outbound, rest)
    } else if let Some(rest) = name.strip_prefix("inbound|") {
        (Direction::Inbound, rest)
    } else {
        return None;
    };
    // Port and subset are short: a byte loop finds their ends sooner than a searcher.
    let (port, rest) = split_bar(rest)?;
    let (subset, host) = split_bar(rest)?;
    if host.as_bytes().contains(&b'|') {
        return None;
    }
    Some(IstioCluster {
        direction,
        port: if port.is_empty() {
            None
        } else {
            Some(port.parse().ok()?)
        },
        subset: non_empty(subset),
        host: non_empty(host),
    })
}

/// The text before the first `|` and the text after it.
fn split_bar(s: &str) -> Option<(&str, &str)> {
    let at = s.bytes().position(|b| b == b'|')?;
    Some((&s[..at], &s[at + 1..]))
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The direction of an Istio cluster name, without splitting the rest: `classify` needs
/// only this on every line.
pub fn direction(name: &str) -> Option<Direction> {
    let d = if name.starts_with("outbound|") {
        Direction::Outbound
    } else if name.starts_with("inbound|") {
        Direction::Inbound
    } else {
        return None;
    };
    (name.bytes().filter(|b| *b == b'|').count() == 3).then_some(d)
}

/// Splits at the first `_.` (Istio's SNI separator).
fn split_sep(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let i = b.windows(2).position(|w| w == b"_.")?;
    Some((&s[..i], &s[i + 2..]))
}

/// Decodes Istio's mTLS SNI `outbound_.PORT_.SUBSET_.HOST` (subset `_` when none).
pub fn decode_sni(sni: &str) -> Option<IstioCluster<'_>> {
    let rest = sni.strip_prefix("outbound_.")?;
    let (port, rest) = split_sep(rest)?;
    let (subset, host) = split_sep(rest)?;
    Some(IstioCluster {
        direction: Direction::Outbound,
        port: Some(port.parse().ok()?),
        subset: (subset != "_" && !subset.is_empty()).then_some(subset),
        host: (!host.is_empty()).then_some(host),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_cluster_names() {
        let c = decode("outbound|443||api.example.com").unwrap();
        assert_eq!(
            (c.direction, c.port, c.subset, c.host),
            (
                Direction::Outbound,
                Some(443),
                None,
                Some("api.example.com")
            )
        );
        let c = decode("inbound|8080|http-8080|svc.default.svc.cluster.local").unwrap();
        assert_eq!(
            (c.direction, c.subset),
            (Direction::Inbound, Some("http-8080"))
        );
        let c = decode("inbound|8080||").unwrap();
        assert_eq!((c.port, c.subset, c.host), (Some(8080), None, None));
        let c = decode("outbound|80|version-v2|catalog").unwrap();
        assert_eq!(c.subset, Some("version-v2"));
        assert_eq!(decode(BLACK_HOLE), None);
        assert_eq!(decode("outbound|x||h"), None);
        assert_eq!(decode("outbound|1|2|3|4"), None);
        assert_eq!(decode("web_cluster"), None);
        for name in [
            "outbound|443||api.example.com",
            "inbound|8080||",
            "outbound|1|2|3|4",
            BLACK_HOLE,
            "outbound|x",
        ] {
            assert_eq!(direction(name), decode(name).map(|c| c.direction), "{name}");
        }
    }

    #[test]
    fn decodes_istio_sni() {
        let c = decode_sni("outbound_.8080_._.payment-service.default.svc.cluster.local").unwrap();
        assert_eq!(
            (c.port, c.subset, c.host),
            (
                Some(8080),
                None,
                Some("payment-service.default.svc.cluster.local")
            )
        );
        let c = decode_sni("outbound_.9080_.v1_.reviews.default.svc.cluster.local").unwrap();
        assert_eq!(c.subset, Some("v1"));
        assert_eq!(decode_sni("kubeflow.kubefrog.fr"), None);
        assert_eq!(decode_sni("outbound_.x_._.h"), None);
    }
}
