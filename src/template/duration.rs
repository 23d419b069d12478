//! [`GoDuration`]: a Go duration (`300ms`, `1m30s`, `-1s`) as Packer's options and
//! provisioner settings (`pause_before`, `timeout`) write them, parsed by kiln's one Go-duration
//! parser ([`boot_commands::parse_go_duration`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Go duration (`300ms`, `1m30s`, `-1s`) as Packer writes them. Negative values are kept as a
/// sign so that options documented as "negative means disabled" can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GoDuration {
    /// Magnitude of the duration.
    pub duration: Duration,
    /// Whether the duration was written with a leading `-`.
    pub negative: bool,
}

impl GoDuration {
    /// A positive duration of `secs` seconds.
    pub const fn secs(secs: u64) -> Self {
        Self {
            duration: Duration::from_secs(secs),
            negative: false,
        }
    }

    /// A positive duration of `ms` milliseconds.
    pub const fn millis(ms: u64) -> Self {
        Self {
            duration: Duration::from_millis(ms),
            negative: false,
        }
    }

    /// `d` for messages: whole seconds from a second up, whole milliseconds below (a measured
    /// wait of 60.000659063s reads `60s`).
    pub fn rounded(d: Duration) -> Self {
        let ms = d.as_millis();
        let ms = if ms >= 1000 {
            (ms + 500) / 1000 * 1000
        } else {
            ms
        };
        Self::millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// The duration with negative values clamped to zero.
    pub fn clamped(&self) -> Duration {
        if self.negative {
            Duration::ZERO
        } else {
            self.duration
        }
    }
}

/// A string that is not a Go duration.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: use a number with a unit such as 300ms, 10s, 1m30s or 1h")]
pub struct DurationError(pub String);

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, DurationError> {
        let (negative, duration) = boot_commands::parse_go_duration(s.trim())
            .ok_or_else(|| DurationError(s.to_owned()))?;
        Ok(Self { duration, negative })
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.negative { "-" } else { "" };
        let ms = self.duration.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{sign}{}s", ms / 1000)
        } else {
            write!(f, "{sign}{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_durations_are_rounded_for_messages() {
        let show = |d| GoDuration::rounded(d).to_string();
        assert_eq!(show(Duration::from_nanos(60_000_659_063)), "60s");
        assert_eq!(show(Duration::from_millis(1_499)), "1s");
        assert_eq!(show(Duration::from_millis(1_500)), "2s");
        assert_eq!(show(Duration::from_micros(250_400)), "250ms");
    }
}
