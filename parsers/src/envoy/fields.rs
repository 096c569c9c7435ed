//! [`Fields`]: the values of one access-log line, borrowed from it.

use std::borrow::Cow;

use smallvec::SmallVec;

use super::field::Field;
use super::flags::{self, Flags};

/// The values of one access-log line. A field is `None` when the line has no value for it
/// (`-`, `null`) or the format lacks it. Values borrow from the line; only JSON strings with
/// escapes are owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    values: [Option<Cow<'a, str>>; Field::COUNT],
    /// Fields the format has, whether or not this line has a value for them.
    carried: u64,
    extras: SmallVec<[(Cow<'a, str>, Cow<'a, str>); 4]>,
}

impl<'a> Fields<'a> {
    /// No values.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `field`, if the line has one.
    pub fn get(&self, field: Field) -> Option<&str> {
        self.values[field as usize].as_deref()
    }

    /// Sets `field`; `-` and the empty string mean absent.
    pub fn set(&mut self, field: Field, value: Cow<'a, str>) {
        self.carried |= 1 << field as u64;
        self.values[field as usize] = present(value);
    }

    /// True when the line's format has `field`, even if this line has no value for it:
    /// tells "not TLS" from "the format does not say".
    pub fn carries(&self, field: Field) -> bool {
        self.carried & (1 << field as u64) != 0
    }

    /// `%UPSTREAM_CLUSTER%` without the trailing `;` Istio 1.23+ appends to stat names.
    pub fn upstream_cluster(&self) -> Option<&str> {
        self.get(Field::UpstreamCluster)
            .map(|c| c.strip_suffix(';').unwrap_or(c))
    }

    /// Sets a field that meshtrail has no name for (`envoy.<name>`).
    pub fn set_extra(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) {
        if let Some(v) = present(value) {
            self.extras.push((name, v));
        }
    }

    pub(crate) fn extras_len(&self) -> usize {
        self.extras.len()
    }

    pub(crate) fn truncate_extras(&mut self, len: usize) {
        self.extras.truncate(len);
    }

    /// Fields without a name of their own, in line order.
    pub fn extras(&self) -> impl Iterator<Item = (&str, &str)> {
        self.extras.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// An integer field (`bytes_sent`, `duration`, …).
    pub fn int(&self, field: Field) -> Option<u64> {
        self.get(field)?.parse().ok()
    }

    /// The HTTP status; `None` when absent or `0` (TCP, or no response sent).
    pub fn status(&self) -> Option<u16> {
        self.get(Field::ResponseCode)?
            .parse()
            .ok()
            .filter(|c| *c != 0)
    }

    /// The response flags as a set.
    pub fn flags(&self) -> Flags {
        self.get(Field::ResponseFlags)
            .map_or(Flags::NONE, Flags::parse)
    }

    /// The response flags as short codes (`NoRouteFound` → `NR`), in line order.
    pub fn flag_codes(&self) -> impl Iterator<Item = &str> + Clone {
        self.get(Field::ResponseFlags)
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(|c| flags::short_code(c.trim()))
            .filter(|c| !c.is_empty())
    }

    /// True for a TCP connection (`"- - -"`): no method, no protocol.
    pub fn is_tcp(&self) -> bool {
        self.get(Field::Method).is_none() && self.get(Field::Protocol).is_none()
    }
}

fn present(value: Cow<'_, str>) -> Option<Cow<'_, str>> {
    (!value.is_empty() && value != "-").then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_and_empty_are_absent() {
        let mut f = Fields::new();
        f.set(Field::Method, "-".into());
        f.set(Field::Path, "".into());
        f.set(Field::ResponseCode, "0".into());
        assert_eq!((f.get(Field::Method), f.get(Field::Path)), (None, None));
        assert_eq!(f.status(), None);
        assert!(f.is_tcp());
    }

    #[test]
    fn flags_accessors() {
        let mut f = Fields::new();
        f.set(Field::ResponseFlags, "UpstreamConnectionFailure,URX".into());
        assert_eq!(f.flag_codes().collect::<Vec<_>>(), ["UF", "URX"]);
        assert!(f.flags().intersects(Flags::UF));
    }
}
