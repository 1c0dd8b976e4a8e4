//! Human-friendly sizes ("64MiB") and durations ("10s", "250ms") in the config file.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// A byte count written as `"64MiB"`, `"1GB"` or a plain integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// A duration written as `"10s"`, `"1m 30s"`, `"250ms"` or a plain integer of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.trim()
                    .parse::<bytesize::ByteSize>()
                    .map(|b| ByteSize(b.as_u64()))
                    .map_err(|e| E::custom(format!("invalid size {v:?} ({e}); try \"64MiB\"")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"10s\" or \"250ms\", or a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(|s| HumanDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(v.trim())
                    .map(HumanDuration)
                    .map_err(|e| E::custom(format!("invalid duration {v:?} ({e}); try \"10s\"")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        size: ByteSize,
        time: HumanDuration,
    }

    #[test]
    fn parses_units_and_plain_numbers() {
        let t: T = toml::from_str("size = \"64MiB\"\ntime = \"250ms\"").unwrap();
        assert_eq!(t.size.0, 64 << 20);
        assert_eq!(t.time.0, Duration::from_millis(250));
        let t: T = toml::from_str("size = 1024\ntime = 3").unwrap();
        assert_eq!(t.size.0, 1024);
        assert_eq!(t.time.0, Duration::from_secs(3));
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        let err = toml::from_str::<T>("size = \"lots\"\ntime = 1")
            .err()
            .unwrap();
        assert!(err.to_string().contains("64MiB"), "{err}");
        let err = toml::from_str::<T>("size = 1\ntime = \"soon\"")
            .err()
            .unwrap();
        assert!(err.to_string().contains("10s"), "{err}");
    }
}
