//! Counters (`atomics.increment`): stored as decimal text, as Redis's INCRBY keeps them, so that
//! data moves between backends as is and every backend answers the same for the same bytes.

use anyhow::{Context, Result};

/// The counter after adding `delta` to the value at `key` (`None`: absent, counts as 0).
pub fn next(key: &str, current: Option<&[u8]>, delta: i64) -> Result<i64> {
    let current = match current {
        None => 0,
        Some(bytes) => {
            parse(bytes).with_context(|| format!("key {key:?} does not hold a counter"))?
        }
    };
    current
        .checked_add(delta)
        .with_context(|| format!("counter {key:?} would overflow"))
}

fn parse(bytes: &[u8]) -> Result<i64> {
    Ok(std::str::from_utf8(bytes)?.trim().parse()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_decimal_text_and_errors_name_the_key() {
        assert_eq!(next("k", None, 5).unwrap(), 5);
        assert_eq!(next("k", Some(b" -3\n"), 1).unwrap(), -2);
        let e = format!("{:#}", next("k", Some(b"x"), 1).unwrap_err());
        assert!(e.contains("\"k\" does not hold a counter"), "{e}");
        let e = format!(
            "{:#}",
            next("k", Some(b"9223372036854775807"), 1).unwrap_err()
        );
        assert!(e.contains("would overflow"), "{e}");
    }
}
