//! Go's `time.ParseDuration` grammar, which etcd's duration flags use: an optional sign, then one or
//! more decimal numbers each with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `300ms`, `1.5h`,
//! `1h30m`, `-2m`; `0` alone needs no unit.

use std::time::Duration;

/// A parsed Go duration (non-negative: etcd's duration flags take no negative values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct GoDuration(pub Duration);

impl std::str::FromStr for GoDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse(text).map(GoDuration)
    }
}

impl std::fmt::Display for GoDuration {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:?}", self.0)
    }
}

const UNITS: [(&str, f64); 8] =
    [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("μs", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

/// Parses `text` as Go does; a negative duration is refused.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (Go's form: 300ms, 1.5s, 10m, 1h30m)");
    let mut rest = text.trim();
    let negative = rest.starts_with('-');
    rest = rest.strip_prefix(['-', '+']).unwrap_or(rest);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut seconds = 0.0_f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        if number.is_empty() || number == "." {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale = UNITS.iter().find(|(name, _)| *name == unit).map(|(_, scale)| *scale);
        let Some(scale) = scale else {
            return Err(if unit.is_empty() {
                format!("missing unit in duration {text:?} (Go's form: 300ms, 1.5s, 10m, 1h30m)")
            } else {
                format!("unknown unit {unit:?} in duration {text:?} (units: ns, us, ms, s, m, h)")
            });
        };
        seconds += value * scale;
        rest = after;
    }
    if negative && seconds > 0.0 {
        return Err(format!("negative duration {text:?} is not allowed"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gos_grammar() {
        let ok = |text: &str| parse(text).unwrap();
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("300ms"), Duration::from_millis(300));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("2h45m30.5s"), Duration::from_secs_f64(9930.5));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("+5m"), Duration::from_secs(300));
        assert_eq!(ok(".5h"), Duration::from_secs(1800));
        for bad in ["", "5", "1x", "h", "1h-5m", "--1s", "1..5s"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse("-1s").unwrap_err().contains("negative"));
        assert!(parse("10").unwrap_err().contains("missing unit"));
    }
}
