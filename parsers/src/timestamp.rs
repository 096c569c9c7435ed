//! RFC 3339 timestamps, as Envoy (`%START_TIME%`) and container runtimes write them.
//!
//! Only what these writers produce is accepted: `YYYY-MM-DDTHH:MM:SS`, an optional
//! fraction of 1–9 digits, and `Z` or a `±HH:MM` offset. Output is always UTC.

use std::fmt;

/// A point in time with nanosecond precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub unix_secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    s.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The fields of a timestamp as written.
struct Parts {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
    nanos: u32,
    /// Seconds east of UTC.
    offset: i64,
}

impl Parts {
    fn read(s: &str) -> Option<Parts> {
        let b = s.as_bytes();
        let (year, month, day) = (digits(b, 0, 4)?, digits(b, 5, 2)?, digits(b, 8, 2)?);
        let (hour, min, sec) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
        if b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || min > 59
            || sec > 60
        {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if b.get(i) == Some(&b'.') {
            let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return None;
            }
            nanos = digits(b, i + 1, n)? * 10u32.pow(9 - n as u32);
            i += 1 + n;
        }
        let offset = match b.get(i)? {
            b'Z' | b'z' if i + 1 == b.len() => 0,
            sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
                let (oh, om) = (digits(b, i + 1, 2)?, digits(b, i + 4, 2)?);
                let secs = i64::from(oh * 3600 + om * 60);
                if *sign == b'+' { secs } else { -secs }
            }
            _ => return None,
        };
        Some(Parts {
            year,
            month,
            day,
            hour,
            min,
            sec,
            nanos,
            offset,
        })
    }
}

impl Timestamp {
    /// Parses an RFC 3339 timestamp; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Timestamp> {
        let p = Parts::read(s)?;
        let days = days_from_civil(i64::from(p.year), p.month, p.day);
        let secs = days * 86_400 + i64::from(p.hour * 3600 + p.min * 60 + p.sec.min(59)) - p.offset;
        Some(Timestamp {
            unix_secs: secs,
            nanos: p.nanos,
        })
    }

    /// True when `s` is an RFC 3339 timestamp; cheaper than [`Timestamp::parse`].
    pub fn is_valid(s: &str) -> bool {
        Parts::read(s).is_some()
    }

    /// Formats as `YYYY-MM-DDTHH:MM:SS.mmmZ` (what Elasticsearch's `date` keeps).
    pub fn millis(self) -> Rfc3339<3> {
        Rfc3339(self)
    }

    /// Formats as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
    pub fn nanos(self) -> Rfc3339<9> {
        Rfc3339(self)
    }
}

/// A [`Timestamp`] displayed in UTC with `N` fraction digits.
#[derive(Clone, Copy, Debug)]
pub struct Rfc3339<const N: u32>(Timestamp);

impl<const N: u32> fmt::Display for Rfc3339<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        let days = t.unix_secs.div_euclid(86_400);
        let rem = t.unix_secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let frac = t.nanos / 10u32.pow(9 - N);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:0width$}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            width = N as usize
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> String {
        Timestamp::parse(s)
            .map(|t| t.millis().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn envoy_start_time_is_kept() {
        assert_eq!(ms("2020-11-25T21:26:18.409Z"), "2020-11-25T21:26:18.409Z");
    }

    #[test]
    fn fractions_of_any_width() {
        assert_eq!(
            ms("2026-01-30T04:09:28.36817375Z"),
            "2026-01-30T04:09:28.368Z"
        );
        assert_eq!(ms("2026-01-30T04:09:28Z"), "2026-01-30T04:09:28.000Z");
        assert_eq!(ms("2026-01-30T04:09:28.5Z"), "2026-01-30T04:09:28.500Z");
        let t = Timestamp::parse("2020-01-23T16:32:49.400311038Z").unwrap();
        assert_eq!(t.nanos().to_string(), "2020-01-23T16:32:49.400311038Z");
    }

    #[test]
    fn offsets_become_utc() {
        assert_eq!(
            ms("2021-11-19T09:50:03.872288692-06:00"),
            "2021-11-19T15:50:03.872Z"
        );
        assert_eq!(
            ms("2021-01-01T01:30:00.000+02:00"),
            "2020-12-31T23:30:00.000Z"
        );
    }

    #[test]
    fn calendar_edges() {
        assert_eq!(ms("2024-02-29T23:59:59.999Z"), "2024-02-29T23:59:59.999Z");
        assert_eq!(ms("1970-01-01T00:00:00Z"), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp::parse("1970-01-01T00:00:01Z").unwrap().unix_secs,
            1
        );
        assert_eq!(ms("1969-12-31T23:59:59.000Z"), "1969-12-31T23:59:59.000Z");
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for s in [
            "",
            "2022-04-02 18:29:55.979",
            "2020-13-01T00:00:00Z",
            "2020-11-25T21:26:18.409",
            "x",
            "2020-11-25T21:26:18.Z",
            "2020-11-25T21:26:18.409Zjunk",
            "2020-11-25T21:26:18.1234567890Z",
            "२०२०",
        ] {
            assert_eq!(Timestamp::parse(s), None, "{s}");
        }
    }
}
