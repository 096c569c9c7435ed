//! Container-log framing: the runtime's wrapper around each line.
//!
//! * CRI (containerd, CRI-O): `<RFC3339Nano> <stdout|stderr> <P|F>[:tags] <message>`; very
//!   old kubelets wrote no tag field. Equivalent regex:
//!   `^(\S+) (stdout|stderr) (?:([PF])(?::\S*)? )?(.*)$`.
//! * docker json-file: `{"log":"…\n","stream":"stdout","time":"…"}`; a `log` without the
//!   trailing newline continues in the next record.
//! * `kubectl logs --timestamps`: `<RFC3339Nano> <message>`.
//! * bare lines.

use std::borrow::Cow;
use std::str::FromStr;

use crate::json::{self, Value};
use crate::timestamp::Timestamp;

/// Which wrapper to expect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Framing {
    /// Detect per line.
    #[default]
    Auto,
    /// CRI (containerd, CRI-O).
    Cri,
    /// docker json-file.
    Docker,
    /// `kubectl logs --timestamps`.
    Kubectl,
    /// No wrapper.
    None,
}

impl Framing {
    /// The name used on the command line and in events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Framing::Auto => "auto",
            Framing::Cri => "cri",
            Framing::Docker => "docker",
            Framing::Kubectl => "kubectl",
            Framing::None => "none",
        }
    }
}

impl FromStr for Framing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Framing::Auto,
            "cri" => Framing::Cri,
            "docker" => Framing::Docker,
            "kubectl" => Framing::Kubectl,
            "none" => Framing::None,
            _ => {
                return Err(format!(
                    "unknown framing {s:?}: expected auto, cri, docker, kubectl or none"
                ));
            }
        })
    }
}

/// The output stream a container wrote a line to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record of a container log, unwrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The wrapper found.
    pub framing: Framing,
    /// The runtime's timestamp, as written; always valid RFC 3339.
    pub time: Option<&'a str>,
    /// The stream.
    pub stream: Option<Stream>,
    /// The line continues in the next record of the same stream.
    pub partial: bool,
    /// The message, without the wrapper and the newline.
    pub body: Cow<'a, [u8]>,
    /// Set when the line was not in the framing asked for: then `body` is the whole line.
    pub malformed: Option<&'static str>,
}

impl<'a> Record<'a> {
    fn bare(line: &'a [u8]) -> Self {
        Record {
            framing: Framing::None,
            time: None,
            stream: None,
            partial: false,
            body: Cow::Borrowed(line),
            malformed: None,
        }
    }
}

/// Unwraps one line (without its newline).
pub fn frame(line: &[u8], framing: Framing) -> Record<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let attempt = match framing {
        Framing::Auto => return auto(line),
        Framing::Cri => {
            cri(line).ok_or("not a CRI log record (<time> <stdout|stderr> <P|F> <message>)")
        }
        Framing::Docker => docker(line)
            .ok_or("not a docker json-file record ({\"log\":…,\"stream\":…,\"time\":…})"),
        Framing::Kubectl => kubectl(line).ok_or("no RFC 3339 timestamp before the message"),
        Framing::None => return Record::bare(line),
    };
    attempt.unwrap_or_else(|why| Record {
        malformed: Some(why),
        ..Record::bare(line)
    })
}

fn auto(line: &[u8]) -> Record<'_> {
    let found = match line.first() {
        Some(b'{') if memchr::memmem::find(line, b"\"log\"").is_some() => docker(line),
        Some(b'0'..=b'9') => cri(line).or_else(|| kubectl(line)),
        _ => None,
    };
    found.unwrap_or_else(|| Record::bare(line))
}

/// Splits off a leading RFC 3339 timestamp and the space after it.
fn leading_time(line: &[u8]) -> Option<(&str, &[u8])> {
    let end = memchr::memchr(b' ', line)?;
    let time = std::str::from_utf8(&line[..end]).ok()?;
    if !Timestamp::is_valid(time) {
        return None;
    }
    Some((time, &line[end + 1..]))
}

fn cri(line: &[u8]) -> Option<Record<'_>> {
    let (time, rest) = leading_time(line)?;
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b"stdout") {
        (Stream::Stdout, r)
    } else {
        (Stream::Stderr, rest.strip_prefix(b"stderr")?)
    };
    let rest = match rest {
        [] => rest,
        [b' ', r @ ..] => r,
        _ => return None,
    };
    // The tag field: `P` or `F`, optionally followed by `:`-separated tags.
    let tag_end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
    let tag = &rest[..tag_end];
    let (partial, body) = match tag.first() {
        Some(p @ (b'P' | b'F')) if tag.len() == 1 || tag[1] == b':' => {
            (*p == b'P', rest.get(tag_end + 1..).unwrap_or_default())
        }
        // Kubelets before the tag field existed.
        _ => (false, rest),
    };
    Some(Record {
        framing: Framing::Cri,
        time: Some(time),
        stream: Some(stream),
        partial,
        body: Cow::Borrowed(body),
        malformed: None,
    })
}

fn kubectl(line: &[u8]) -> Option<Record<'_>> {
    let (time, body) = leading_time(line)?;
    Some(Record {
        framing: Framing::Kubectl,
        time: Some(time),
        body: Cow::Borrowed(body),
        ..Record::bare(line)
    })
}

fn docker(line: &[u8]) -> Option<Record<'_>> {
    let text = std::str::from_utf8(line).ok()?;
    let (mut log, mut stream, mut time) = (None, None, None);
    json::for_each_member(text, |key, value| match (key.as_ref(), value) {
        ("log", Value::Str(s)) => log = Some(s),
        ("stream", Value::Str(s)) => {
            stream = match s.as_ref() {
                "stdout" => Some(Stream::Stdout),
                "stderr" => Some(Stream::Stderr),
                _ => None,
            }
        }
        // Kept only when valid, so every `Record::time` is RFC 3339.
        ("time", Value::Str(Cow::Borrowed(s))) if Timestamp::is_valid(s) => time = Some(s),
        _ => {}
    })
    .ok()?;
    let log = log?;
    let partial = !log.ends_with('\n');
    let body: Cow<'_, [u8]> = match log {
        Cow::Borrowed(s) => Cow::Borrowed(s.strip_suffix('\n').unwrap_or(s).as_bytes()),
        Cow::Owned(mut s) => {
            if s.ends_with('\n') {
                s.pop();
            }
            Cow::Owned(s.into_bytes())
        }
    };
    Some(Record {
        framing: Framing::Docker,
        time,
        stream,
        partial,
        body,
        malformed: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body<'a>(r: &'a Record<'_>) -> &'a str {
        std::str::from_utf8(&r.body).unwrap()
    }

    #[test]
    fn cri_full_and_partial() {
        let r = frame(
            b"2026-01-30T04:09:28.36817375Z stdout F [x] y",
            Framing::Auto,
        );
        assert_eq!(
            (r.framing, r.time, r.stream, r.partial, body(&r)),
            (
                Framing::Cri,
                Some("2026-01-30T04:09:28.36817375Z"),
                Some(Stream::Stdout),
                false,
                "[x] y"
            )
        );
        let r = frame(
            b"2021-11-19T09:50:03.872288692-06:00 stderr P part",
            Framing::Cri,
        );
        assert_eq!(
            (r.stream, r.partial, body(&r)),
            (Some(Stream::Stderr), true, "part")
        );
        let r = frame(b"2021-11-19T09:50:03Z stdout F:x:y msg", Framing::Cri);
        assert_eq!((r.partial, body(&r)), (false, "msg"));
    }

    #[test]
    fn cri_edge_cases() {
        assert_eq!(
            body(&frame(b"2021-11-19T09:50:03Z stdout F ", Framing::Cri)),
            ""
        );
        assert_eq!(
            body(&frame(b"2021-11-19T09:50:03Z stdout F", Framing::Cri)),
            ""
        );
        // Kubelets without the tag field.
        assert_eq!(
            body(&frame(
                b"2021-11-19T09:50:03Z stdout hello world",
                Framing::Cri
            )),
            "hello world"
        );
        assert_eq!(
            body(&frame(b"2021-11-19T09:50:03Z stdout Fix it", Framing::Cri)),
            "Fix it"
        );
        let r = frame(b"2021-11-19T09:50:03Z stdoutx F m", Framing::Cri);
        assert!(r.malformed.is_some() && body(&r) == "2021-11-19T09:50:03Z stdoutx F m");
    }

    #[test]
    fn docker_json_file() {
        let r = frame(
            br#"{"log":"[a] \"GET\"\n","stream":"stdout","time":"2020-01-23T16:32:49.400311038Z"}"#,
            Framing::Auto,
        );
        assert_eq!(
            (r.framing, r.partial, body(&r), r.time),
            (
                Framing::Docker,
                false,
                "[a] \"GET\"",
                Some("2020-01-23T16:32:49.400311038Z")
            )
        );
        let r = frame(
            br#"{"stream":"stderr","log":"no newline","time":"t"}"#,
            Framing::Docker,
        );
        assert_eq!(
            (r.partial, r.stream, body(&r)),
            (true, Some(Stream::Stderr), "no newline")
        );
        let r = frame(br#"{"log":"x\n"}"#, Framing::Docker);
        assert_eq!(body(&r), "x");
        assert!(
            frame(br#"{"msg":"x"}"#, Framing::Docker)
                .malformed
                .is_some()
        );
    }

    #[test]
    fn kubectl_and_bare() {
        let r = frame(
            b"2020-11-22T20:04:54.223002528Z [2020-11-22T20:04:32.765Z] x",
            Framing::Auto,
        );
        assert_eq!(
            (r.framing, body(&r)),
            (Framing::Kubectl, "[2020-11-22T20:04:32.765Z] x")
        );
        let r = frame(
            b"2022-04-26T12:47:30.333876Z\tinfo\txdsproxy\tconnected",
            Framing::Auto,
        );
        assert_eq!(r.framing, Framing::None);
        let r = frame(b"[2020-11-22T20:04:32.765Z] x", Framing::Auto);
        assert_eq!(
            (r.framing, body(&r)),
            (Framing::None, "[2020-11-22T20:04:32.765Z] x")
        );
        let r = frame(br#"{"start_time":"x"}"#, Framing::Auto);
        assert_eq!(r.framing, Framing::None);
    }

    #[test]
    fn garbage_is_kept_whole() {
        let junk = [0xff, 0x00, b'{', b'"', 0xc3];
        for f in [
            Framing::Auto,
            Framing::Cri,
            Framing::Docker,
            Framing::Kubectl,
            Framing::None,
        ] {
            assert_eq!(&*frame(&junk, f).body, &junk, "{f:?}");
        }
    }
}
