//! Envoy response flags (`%RESPONSE_FLAGS%`): short codes, long names, and a bitset.

/// Short code and long name of every response flag Envoy writes, in bit order.
const TABLE: &[(&str, &str)] = &[
    ("LH", "FailedLocalHealthCheck"),
    ("UH", "NoHealthyUpstream"),
    ("UT", "UpstreamRequestTimeout"),
    ("LR", "LocalReset"),
    ("UR", "UpstreamRemoteReset"),
    ("UF", "UpstreamConnectionFailure"),
    ("UC", "UpstreamConnectionTermination"),
    ("UO", "UpstreamOverflow"),
    ("NR", "NoRouteFound"),
    ("DI", "DelayInjected"),
    ("FI", "FaultInjected"),
    ("RL", "RateLimited"),
    ("UAEX", "UnauthorizedExternalService"),
    ("RLSE", "RateLimitServiceError"),
    ("DC", "DownstreamConnectionTermination"),
    ("URX", "UpstreamRetryLimitExceeded"),
    ("SI", "StreamIdleTimeout"),
    ("IH", "InvalidEnvoyRequestHeaders"),
    ("DPE", "DownstreamProtocolError"),
    ("UMSDR", "UpstreamMaxStreamDurationReached"),
    ("RFCF", "ResponseFromCacheFilter"),
    ("NFCF", "NoFilterConfigFound"),
    ("DT", "DurationTimeout"),
    ("UPE", "UpstreamProtocolError"),
    ("NC", "NoClusterFound"),
    ("OM", "OverloadManagerTerminated"),
    ("DF", "DnsResolutionFailed"),
    ("DO", "DropOverload"),
    ("DR", "DownstreamRemoteReset"),
    ("UDO", "UnconditionalDropOverload"),
];

/// A set of response flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u32);

macro_rules! consts {
    ($($name:ident = $bit:expr),* $(,)?) => {
        impl Flags { $(
            #[doc = concat!("The `", stringify!($name), "` flag.")]
            pub const $name: Flags = Flags(1 << $bit);
        )* }
    };
}
consts!(
    LH = 0,
    UH = 1,
    UT = 2,
    LR = 3,
    UR = 4,
    UF = 5,
    UC = 6,
    UO = 7,
    NR = 8,
    DI = 9,
    FI = 10,
    RL = 11,
    UAEX = 12,
    RLSE = 13,
    DC = 14,
    URX = 15,
    SI = 16,
    IH = 17,
    DPE = 18,
    UMSDR = 19,
    RFCF = 20,
    NFCF = 21,
    DT = 22,
    UPE = 23,
    NC = 24,
    OM = 25,
    DF = 26,
    DO = 27,
    DR = 28,
    UDO = 29
);

impl Flags {
    /// No flag.
    pub const NONE: Flags = Flags(0);
    /// A code meshtrail does not know (a newer Envoy).
    pub const UNKNOWN: Flags = Flags(1 << 31);
    /// Flags that mean the request or connection did not complete normally.
    pub const FAILURE: Flags = Flags(!(Self::DI.0 | Self::RFCF.0));
    /// Flags that mean the upstream could not be reached or failed.
    pub const UPSTREAM_FAILURE: Flags = Flags(
        Self::UH.0
            | Self::UT.0
            | Self::LR.0
            | Self::UR.0
            | Self::UF.0
            | Self::UC.0
            | Self::UO.0
            | Self::URX.0
            | Self::UMSDR.0
            | Self::UPE.0
            | Self::NC.0
            | Self::DF.0
            | Self::DO.0
            | Self::UDO.0
            | Self::LH.0,
    );

    /// Parses `UF,URX`, `-` or long names such as `NoRouteFound`.
    pub fn parse(value: &str) -> Flags {
        let mut flags = Flags::NONE;
        for code in value.split(',') {
            flags.0 |= bit(code.trim()).map_or(Self::UNKNOWN.0, |b| 1 << b);
        }
        flags
    }

    /// True when any flag of `other` is set.
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }

    /// True when no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

fn bit(code: &str) -> Option<usize> {
    TABLE
        .iter()
        .position(|(short, long)| *short == code || *long == code)
}

/// The short code of a flag written either way: `NoRouteFound` → `NR`; an unknown code is
/// returned as written.
pub fn short_code(code: &str) -> &str {
    match bit(code) {
        Some(b) => TABLE[b].0,
        None => code,
    }
}

/// True when `value` is a well-formed flag list: `-`, or comma-separated letters.
pub fn well_formed(value: &str) -> bool {
    value == "-"
        || (!value.is_empty()
            && value
                .split(',')
                .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphabetic())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_short_and_long() {
        let f = Flags::parse("UF,URX");
        assert!(f.intersects(Flags::UF) && f.intersects(Flags::URX) && !f.intersects(Flags::RL));
        assert_eq!(Flags::parse("NoRouteFound"), Flags::NR);
        assert_eq!(Flags::parse("XYZ"), Flags::UNKNOWN);
        assert_eq!(short_code("UpstreamRequestTimeout"), "UT");
        assert_eq!(short_code("ZZ"), "ZZ");
    }

    #[test]
    fn every_flag_in_the_reference_table_is_known() {
        let tsv = include_str!("../../tests/data/response_flags.tsv");
        for line in tsv.lines().skip(1) {
            let mut cols = line.split('\t');
            let (short, long) = (cols.next().unwrap(), cols.next().unwrap());
            assert_eq!(short_code(long), short, "{line}");
            assert!(!Flags::parse(short).intersects(Flags::UNKNOWN), "{short}");
        }
    }

    #[test]
    fn well_formedness() {
        assert!(well_formed("-") && well_formed("UF,URX") && well_formed("NoRouteFound"));
        assert!(
            !well_formed("") && !well_formed("UF,") && !well_formed("200") && !well_formed("a b")
        );
    }

    #[test]
    fn informational_flags_are_not_failures() {
        assert!(!Flags::DI.intersects(Flags::FAILURE));
        assert!(Flags::UAEX.intersects(Flags::FAILURE));
    }
}
