//! Sizes and durations as profiles write them (`512M`, `90s`, `unlimited`), parsed when the
//! profile is read so that a bad value is reported at its file, line and column. Each keeps
//! the text it was written as, so that `sbx profile show` prints what the user wrote.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("{text:?} is not a size ({reason}); write e.g. 512M, 2G or unlimited")]
    Size { text: String, reason: String },
    #[error("{text:?} is not a duration ({reason}); write e.g. 90s, 10m or 1h")]
    Span { text: String, reason: String },
}

/// A size with binary units (`512M` = 512 MiB); `unlimited` lifts a limit an earlier layer set.
#[derive(Clone, Debug)]
pub struct Size {
    text: String,
    bytes: Option<u64>,
}

impl Size {
    /// Bytes; None for `unlimited`.
    pub fn bytes(&self) -> Option<u64> {
        self.bytes
    }

    pub fn from_bytes(bytes: u64) -> Size {
        Size {
            text: bytes.to_string(),
            bytes: Some(bytes),
        }
    }
}

impl FromStr for Size {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Size, UnitError> {
        let t = text.trim();
        let bytes = if t.eq_ignore_ascii_case("unlimited") {
            None
        } else {
            Some(
                parse_size::Config::new()
                    .with_binary()
                    .parse_size(t)
                    .map_err(|e| UnitError::Size {
                        text: text.to_string(),
                        reason: e.to_string(),
                    })?,
            )
        };
        Ok(Size {
            text: text.to_string(),
            bytes,
        })
    }
}

/// A duration (`90s`, `10m`, `1h 30m`); `unlimited` lifts a limit an earlier layer set.
#[derive(Clone, Debug)]
pub struct Span {
    text: String,
    duration: Option<Duration>,
}

impl Span {
    /// None for `unlimited`.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }
}

impl FromStr for Span {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Span, UnitError> {
        let t = text.trim();
        let duration = if t.eq_ignore_ascii_case("unlimited") {
            None
        } else {
            Some(humantime::parse_duration(t).map_err(|e| UnitError::Span {
                text: text.to_string(),
                reason: e.to_string(),
            })?)
        };
        Ok(Span {
            text: text.to_string(),
            duration,
        })
    }
}

/// Equal when they mean the same, whatever the spelling.
impl PartialEq for Size {
    fn eq(&self, other: &Size) -> bool {
        self.bytes == other.bytes
    }
}

impl PartialEq for Span {
    fn eq(&self, other: &Span) -> bool {
        self.duration == other.duration
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Serde for the text form, shared by both units.
macro_rules! text_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.text.serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

text_serde!(Size);
text_serde!(Span);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_use_human_units() {
        let size = |t: &str| t.parse::<Size>().unwrap().bytes();
        let span = |t: &str| t.parse::<Span>().unwrap().duration();
        assert_eq!(size("512M"), Some(512 << 20));
        assert_eq!(size("2G"), Some(2 << 30));
        assert_eq!(size("unlimited"), None);
        assert_eq!(size("0"), Some(0));
        assert_eq!(span("90s"), Some(Duration::from_secs(90)));
        assert_eq!(span("10m"), Some(Duration::from_secs(600)));
        assert!("12 parsecs".parse::<Size>().is_err());
        assert!("-1G".parse::<Size>().is_err());
        assert!("soon".parse::<Span>().is_err());
    }

    #[test]
    fn the_text_is_kept_for_display() {
        let s: Size = "8G".parse().unwrap();
        assert_eq!(s.to_string(), "8G");
        assert_eq!(s, Size::from_bytes(8 << 30));
    }
}
