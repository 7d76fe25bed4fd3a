//! One grammar for durations, rates and sizes — in scenario files, on both command lines
//! (`gitspy-chaos`, `gitspy`) and in GitSpy's environment variables.
//!
//! - **Duration**: one or more `<number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`; the
//!   number may have a fraction (`1.5s`). Examples: `500ms`, `30s`, `1m30s`, `7d`. A bare `0`
//!   means zero; any other bare number is refused, because `30` could be seconds or
//!   milliseconds and a value wrong by a factor of 1000 would still run.
//! - **Rate**: `<count>/<period>`, the period a duration or a bare unit (`/s` = `/1s`):
//!   `50/s`, `300/m`, `10/500ms`. The count is a whole number ≥ 1. A bare number (`rate: 20`)
//!   is refused everywhere, for the same reason.
//! - **Size**: a whole number of bytes with an optional unit: `1024`, `64KiB`, `25MiB`, `1GiB`,
//!   or decimal `kB`/`KB`, `MB`, `GB`. A bare number is bytes.
//!
//! Errors name the bad value and why; [`UnitError::hint`] says how to write it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Separates message and hint in a serde error string, so a loader that knows it (the
/// harness's scenario loader) can show the hint on its own line.
pub const HINT_SEPARATOR: &str = "\u{2063}hint\u{2063}";

/// Why a duration, rate or size could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    /// What is wrong, naming the bad value.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UnitError {}

impl UnitError {
    /// `message` and `hint` in one line, for command-line value parsers.
    pub fn with_hint(&self) -> String {
        format!("{} ({})", self.message, self.hint)
    }
}

pub const DURATION_HINT: &str =
    "write a number followed by a unit: `500ms`, `30s`, `2m`, `1h`, `7d` or combined like `1m30s`";
pub const RATE_HINT: &str = "write a count per unit of time: `50/s`, `300/m`, `10/500ms`";
pub const SIZE_HINT: &str = "write bytes with an optional unit: `1024`, `64KiB`, `25MiB`, `1GiB`";

/// A span of time written with a unit (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    /// `n` seconds.
    pub const fn secs(n: u64) -> Self {
        Dur(Duration::from_secs(n))
    }

    /// `n` milliseconds.
    pub const fn millis(n: u64) -> Self {
        Dur(Duration::from_millis(n))
    }

    /// The standard-library duration.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// Whether this is zero.
    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// This duration multiplied by `factor`, never below 1 ms so a pace never degenerates into
    /// a busy loop. A factor that is not a positive finite number, or a product that overflows,
    /// leaves the duration unchanged.
    #[must_use]
    pub fn scaled(self, factor: f64) -> Self {
        if !(factor.is_finite() && factor > 0.0) || self.0.is_zero() {
            return self;
        }
        match Duration::try_from_secs_f64(self.0.as_secs_f64() * factor) {
            Ok(d) => Dur(d.max(Duration::from_millis(1))),
            Err(_) => self,
        }
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Self {
        Dur(d)
    }
}

/// Parses a duration (see the module docs) into a standard duration.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    text.parse::<Dur>().map(Dur::get)
}

impl FromStr for Dur {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, UnitError> {
        let bad = |why: &str| UnitError {
            message: format!("invalid duration `{text}`: {why}"),
            hint: DURATION_HINT.to_owned(),
        };
        let s = text.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.starts_with('-') {
            return Err(bad("a duration cannot be negative"));
        }
        if s == "0" {
            return Ok(Dur(Duration::ZERO));
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let number = &rest[..digits];
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let seconds_per_unit = match unit {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                "" => return Err(bad("the number has no unit")),
                other => return Err(bad(&format!("unknown unit `{other}`"))),
            };
            let part = if let Ok(n) = number.parse::<u64>() {
                let ms_per_unit = (seconds_per_unit * 1000.0) as u64;
                n.checked_mul(ms_per_unit).map(Duration::from_millis)
            } else {
                let n: f64 = number
                    .parse()
                    .map_err(|_| bad(&format!("`{number}` is not a number")))?;
                Duration::try_from_secs_f64(n * seconds_per_unit).ok()
            };
            total = part
                .and_then(|p| total.checked_add(p))
                .ok_or_else(|| bad("it is too long"))?;
        }
        Ok(Dur(total))
    }
}

impl fmt::Display for Dur {
    /// The shortest spelling (whole milliseconds) that parses back: `1m30s`, `500ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total_ms = self.0.as_millis();
        if total_ms == 0 {
            return f.write_str("0s");
        }
        let (h, rem) = (total_ms / 3_600_000, total_ms % 3_600_000);
        let (m, rem) = (rem / 60_000, rem % 60_000);
        let (s, ms) = (rem / 1000, rem % 1000);
        for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde_error)
    }
}

fn serde_error<E: serde::de::Error>(e: UnitError) -> E {
    E::custom(format!("{}{HINT_SEPARATOR}{}", e.message, e.hint))
}

/// A pace: `count` events per `per` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events per period; at least 1.
    pub count: u32,
    /// The period; not zero.
    pub per: Dur,
}

impl Rate {
    /// Events per second.
    pub fn per_second(self) -> f64 {
        f64::from(self.count) / self.per.0.as_secs_f64()
    }

    /// The gap between two consecutive sends at this pace.
    pub fn interval(self) -> Duration {
        self.per.0 / self.count.max(1)
    }

    /// How long `n` sends take at this pace (the first leaves at once).
    pub fn time_for(self, n: u64) -> Duration {
        let gaps = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.interval().saturating_mul(gaps)
    }
}

impl FromStr for Rate {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, UnitError> {
        let bad = |why: &str| UnitError {
            message: format!("invalid rate `{text}`: {why}"),
            hint: RATE_HINT.to_owned(),
        };
        let Some((count, per)) = text.trim().split_once('/') else {
            return Err(bad("expected `<count>/<unit>`"));
        };
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| bad("the count must be a whole number"))?;
        if count == 0 {
            return Err(bad("the count must be at least 1"));
        }
        let per = per.trim();
        // `50/s` means one second: a unit without a number is a period of one unit.
        let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
            per.parse::<Dur>().map_err(|e| bad(&e.message))?
        } else {
            format!("1{per}")
                .parse::<Dur>()
                .map_err(|_| bad(&format!("unknown unit `{per}`")))?
        };
        if per.is_zero() {
            return Err(bad("the period cannot be zero"));
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per.to_string().as_str() {
            "1s" => write!(f, "{}/s", self.count),
            "1m" => write!(f, "{}/m", self.count),
            "1h" => write!(f, "{}/h", self.count),
            per => write!(f, "{}/{per}", self.count),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde_error)
    }
}

/// Parses a size in bytes (see the module docs).
pub fn parse_size(text: &str) -> Result<usize, UnitError> {
    let bad = |why: &str| UnitError {
        message: format!("invalid size `{text}`: {why}"),
        hint: SIZE_HINT.to_owned(),
    };
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(bad("expected a whole number"));
    }
    let n: usize = num.parse().map_err(|_| bad("the number is too large"))?;
    let mul: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(bad(&format!("unknown unit `{other}`"))),
    };
    n.checked_mul(mul).ok_or_else(|| bad("it is too large"))
}

/// Command-line value parser for durations (message and hint in one line).
pub fn duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.with_hint())
}

/// Command-line value parser for rates.
pub fn rate_arg(text: &str) -> Result<Rate, String> {
    text.parse::<Rate>().map_err(|e| e.with_hint())
}

/// Command-line value parser for sizes.
pub fn size_arg(text: &str) -> Result<usize, String> {
    parse_size(text).map_err(|e| e.with_hint())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One table for every form: `(text, Ok(ms) | Err(why))`.
    fn check_dur(text: &str, expect: Result<u64, &str>) {
        let got = parse_duration(text).map(|d| d.as_millis() as u64);
        match expect {
            Ok(ms) => assert_eq!(got, Ok(ms), "{text}"),
            Err(why) => {
                let e = got.unwrap_err();
                assert_eq!(e.message, format!("invalid duration `{text}`: {why}"));
                assert_eq!(e.hint, DURATION_HINT);
            }
        }
    }

    #[test]
    fn durations_in_every_form() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("7d", 604_800_000),
            ("1m30s", 90_000),
            ("1s500ms", 1_500),
            ("1.5s", 1_500),
            ("0.25m", 15_000),
            (" 10s ", 10_000),
            ("0s", 0),
            ("0", 0),
        ] {
            check_dur(text, Ok(ms));
        }
    }

    #[test]
    fn bad_durations_name_the_problem() {
        check_dur("30", Err("the number has no unit"));
        check_dur("30x", Err("unknown unit `x`"));
        check_dur("", Err("it is empty"));
        check_dur("-5s", Err("a duration cannot be negative"));
        check_dur("s", Err("expected a number"));
        check_dur("1..5s", Err("`1..5` is not a number"));
        check_dur("10 parsecs", Err("unknown unit ` parsecs`"));
        check_dur("99999999999999999999d", Err("it is too long"));
    }

    #[test]
    fn rates_in_every_form_and_their_errors() {
        for (text, count, ms) in [
            ("50/s", 50, 1000),
            ("300/m", 300, 60_000),
            ("10/500ms", 10, 500),
            ("3/h", 3, 3_600_000),
            (" 20 / s ", 20, 1000),
        ] {
            let r: Rate = text.parse().unwrap();
            assert_eq!((r.count, r.per), (count, Dur::millis(ms)), "{text}");
        }
        assert_eq!("20/s".parse::<Rate>().unwrap().per_second(), 20.0);
        for (text, why) in [
            ("20", "expected `<count>/<unit>`"),
            ("0/s", "the count must be at least 1"),
            ("-5/s", "the count must be a whole number"),
            ("2.5/s", "the count must be a whole number"),
            ("5/fortnight", "unknown unit `fortnight`"),
            ("5/0s", "the period cannot be zero"),
        ] {
            let e = text.parse::<Rate>().unwrap_err();
            assert_eq!(e.message, format!("invalid rate `{text}`: {why}"));
            assert_eq!(e.hint, RATE_HINT);
        }
    }

    #[test]
    fn sizes_in_every_form_and_their_errors() {
        for (text, bytes) in [
            ("1024", 1024),
            ("64KiB", 65_536),
            ("25MiB", 25 << 20),
            ("1GiB", 1 << 30),
            ("3kB", 3000),
            ("2MB", 2_000_000),
            ("1GB", 1_000_000_000),
            ("7B", 7),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for (text, why) in [
            ("MiB", "expected a whole number"),
            ("1.5MiB", "unknown unit `.5MiB`"),
            ("10 bytes", "unknown unit `bytes`"),
            ("99999999999999999999", "the number is too large"),
        ] {
            let e = parse_size(text).unwrap_err();
            assert_eq!(e.message, format!("invalid size `{text}`: {why}"));
        }
    }

    #[test]
    fn display_parses_back() {
        for ms in [0u64, 1, 999, 1000, 61_001, 3_600_000, 90_061_001] {
            let d = Dur::millis(ms);
            assert_eq!(d.to_string().parse::<Dur>(), Ok(d));
            let r = Rate {
                count: 7,
                per: Dur::millis(ms.max(1)),
            };
            assert_eq!(r.to_string().parse::<Rate>(), Ok(r));
        }
    }

    #[test]
    fn cli_parsers_carry_the_hint() {
        assert!(duration_arg("30").unwrap_err().contains("`30s`"));
        assert!(rate_arg("20").unwrap_err().contains("50/s"));
        assert!(size_arg("lots").unwrap_err().contains("25MiB"));
    }
}
