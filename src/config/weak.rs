//! Serde helpers for Packer's loose typing and Go-style values: integers and booleans given as
//! strings (legacy JSON templates and `"1024"` in HCL are accepted by Packer), Go durations
//! (`1m30s`, [`GoDuration`], which lives with the template layer that also reads it) and disk
//! sizes (`40960M`, `20G`).

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

pub use crate::template::duration::GoDuration;
use std::str::FromStr;

/// Deserialize an integer that may be written as a number or a numeric string.
pub fn int<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<T: TryFrom<i64> + TryFrom<u64>> Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("integer {v} is out of range")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("integer {v} is out of range")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                #[allow(clippy::cast_possible_truncation)]
                self.visit_i64(v as i64)
            } else {
                Err(E::invalid_type(de::Unexpected::Float(v), &self))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            let t = v.trim();
            if let Ok(n) = t.parse::<i64>() {
                return self.visit_i64(n);
            }
            match t.parse::<f64>() {
                Ok(f) => self.visit_f64(f),
                Err(_) => Err(E::invalid_type(de::Unexpected::Str(v), &self)),
            }
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// Like [`int`], for optional integers (`null` means unset).
pub fn opt_int<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    #[derive(Deserialize)]
    struct W<T: TryFrom<i64> + TryFrom<u64>>(#[serde(deserialize_with = "int")] T);
    Ok(Option::<W<T>>::deserialize(d)?.map(|w| w.0))
}

/// Deserialize a boolean that may be written as `true`, `"true"`, `"1"`, `"false"`…
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim() {
                "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(true),
                "false" | "0" | "f" | "F" | "FALSE" | "False" | "" => Ok(false),
                _ => Err(E::invalid_type(de::Unexpected::Str(v), &self)),
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
    }
    d.deserialize_any(V)
}

/// Like [`bool`], for optional booleans.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "bool")] bool);
    Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
}

/// Deserialize a string, accepting numbers and booleans as HCL's automatic conversion does.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

/// Deserialize a nested block: HCL bodies are evaluated with each block type as an array of
/// objects, so accept `[ {…} ]` (at most one) as well as `{…}`.
pub fn block<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrList<T> {
        List(Vec<T>),
        One(T),
    }
    match OneOrList::<T>::deserialize(d)? {
        OneOrList::One(t) => Ok(t),
        OneOrList::List(mut v) if v.len() <= 1 => Ok(v.pop().unwrap_or_default()),
        OneOrList::List(v) => Err(de::Error::custom(format!(
            "expected one block, found {}",
            v.len()
        ))),
    }
}

/// Deserialize a list of strings that may be written as one string (legacy JSON templates
/// write `"boot_command": "<esc>…"`, which Packer's loose decoding accepts).
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    Ok(
        match OneOrMany::deserialize(d)
            .map_err(|_| de::Error::custom("expected a list of strings"))?
        {
            OneOrMany::Many(v) => v,
            OneOrMany::One(s) => vec![s],
        },
    )
}

/// A password or other secret option: reads and serializes as a plain string, but its `Debug`
/// shows `<sensitive>` so a logged config does not leak it. Derefs to `str`.
#[derive(Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(#[serde(deserialize_with = "string")] pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<sensitive>")
    }
}

impl std::ops::Deref for Secret {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Why a duration or size string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not a Go duration.
    #[error("invalid duration {0:?}: use a number with a unit such as 300ms, 10s, 1m30s or 1h")]
    Duration(String),
    /// Not a size.
    #[error("invalid size {0:?}: use a number with an optional unit K, M, G or T (plain numbers are MiB)")]
    Size(String),
    /// Not a size qemu-img reads.
    #[error("invalid size {0:?}: qemu-img takes a number (bytes) with an optional fraction and unit K, M, G, T, P or E, such as 512M or 1.5G")]
    ImgSize(String),
}

/// A size handed to `qemu-img` as written (Packer does so with `disk_additional_size`): a
/// number, optionally with a fraction, and an optional unit `b`, `K`, `M`, `G`, `T`, `P` or
/// `E` (either case); a plain number is bytes, as qemu-img reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImgSize(pub String);

impl FromStr for ImgSize {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let number = s.trim_end_matches(|c: char| "bBkKmMgGtTpPeE".contains(c));
        let unit_len = s.len() - number.len();
        let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        if unit_len > 1 || !digits(whole) || !digits(fraction) {
            return Err(ParseError::ImgSize(s.to_owned()));
        }
        Ok(ImgSize(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for ImgSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = string(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Serialize for ImgSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `disk_size`: an empty string or `0` means the builder's default, as in Packer.
pub fn size_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Size>, D::Error> {
    let s = string(d)?;
    match s.trim() {
        "" | "0" => Ok(None),
        t => t.parse().map(Some).map_err(de::Error::custom),
    }
}

/// A size in bytes, written as qemu-img does: `40960M`, `20G`, `1T`; a plain number means MiB
/// (Packer's rule for `disk_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Size(pub u64);

impl Size {
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    /// The size in whole MiB, rounded up.
    pub fn as_mib(&self) -> u64 {
        self.0.div_ceil(1024 * 1024)
    }
}

impl FromStr for Size {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let err = || ParseError::Size(s.to_owned());
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let n: u64 = t[..split].parse().map_err(|_| err())?;
        let unit = t[split..].trim().to_ascii_uppercase();
        let unit = unit
            .strip_suffix("IB")
            .or_else(|| unit.strip_suffix('B'))
            .unwrap_or(&unit);
        let shift = match unit {
            "" | "M" => 20,
            "K" => 10,
            "G" => 30,
            "T" => 40,
            _ => return Err(err()),
        };
        // "B" alone means bytes.
        let shift = if t[split..].trim().eq_ignore_ascii_case("b") {
            0
        } else {
            shift
        };
        n.checked_mul(1u64 << shift).map(Size).ok_or_else(err)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1 << 20) {
            write!(f, "{}M", self.0 >> 20)
        } else {
            write!(f, "{}B", self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = string(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `disk_additional_size` as Packer hands it to qemu-img (packer-plugin-qemu's
    /// step_create_disk.go passes each entry unchanged): what qemu-img reads is accepted as
    /// written, the rest refused at validate.
    #[test]
    fn img_sizes_are_what_qemu_img_reads() {
        for ok in ["1024", "64M", "1.5G", "1P", "2E", "10k", "512b"] {
            assert_eq!(ok.parse::<ImgSize>().unwrap().0, ok);
        }
        for bad in ["", "M", "1.G", "1GB", "-1G", "1 G", "ten"] {
            assert!(bad.parse::<ImgSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!("10s".parse::<GoDuration>().unwrap(), GoDuration::secs(10));
        assert_eq!("1m30s".parse::<GoDuration>().unwrap(), GoDuration::secs(90));
        assert_eq!(
            "300ms".parse::<GoDuration>().unwrap(),
            GoDuration::millis(300)
        );
        assert_eq!(
            "1.5h".parse::<GoDuration>().unwrap(),
            GoDuration::secs(5400)
        );
        let neg: GoDuration = "-1s".parse().unwrap();
        assert!(neg.negative);
        assert_eq!(neg.clamped(), std::time::Duration::ZERO);
        for bad in ["", "10", "5x", "s", "1m3", "--1s"] {
            assert!(bad.parse::<GoDuration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s: Option<Secret> = serde_json::from_value(serde_json::json!("hunter2")).unwrap();
        assert_eq!(format!("{s:?}"), "Some(<sensitive>)");
        assert_eq!(s.as_deref(), Some("hunter2"));
    }

    #[test]
    fn one_string_is_a_list() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "string_list")]
            l: Vec<String>,
        }
        let t: T = serde_json::from_value(serde_json::json!({"l": "a"})).unwrap();
        assert_eq!(t.l, ["a"]);
        let t: T = serde_json::from_value(serde_json::json!({"l": ["a", "b"]})).unwrap();
        assert_eq!(t.l, ["a", "b"]);
        assert!(serde_json::from_value::<T>(serde_json::json!({"l": 1})).is_err());
    }

    #[test]
    fn parses_sizes() {
        assert_eq!("40960M".parse::<Size>().unwrap(), Size::mib(40960));
        assert_eq!("20G".parse::<Size>().unwrap(), Size::mib(20 * 1024));
        assert_eq!("65536".parse::<Size>().unwrap(), Size::mib(65536));
        assert_eq!("1GiB".parse::<Size>().unwrap(), Size::mib(1024));
        assert_eq!("512b".parse::<Size>().unwrap(), Size(512));
        assert!("12Q".parse::<Size>().is_err());
        assert!("99999999999999999999T".parse::<Size>().is_err());
    }

    #[test]
    fn weak_numbers_and_bools() {
        #[derive(Deserialize)]
        struct T {
            #[serde(deserialize_with = "int")]
            n: u32,
            #[serde(deserialize_with = "bool")]
            b: bool,
        }
        let t: T = serde_json::from_value(serde_json::json!({"n": "1024", "b": "true"})).unwrap();
        assert_eq!((t.n, t.b), (1024, true));
        assert!(serde_json::from_value::<T>(serde_json::json!({"n": "x", "b": true})).is_err());
        assert!(serde_json::from_value::<T>(serde_json::json!({"n": -1, "b": true})).is_err());
    }
}
