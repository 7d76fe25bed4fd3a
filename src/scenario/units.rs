//! Durations (`30s`, `2m`, `1m30s`, `500ms`) and rates (`50/s`, `300/m`) as they are written in
//! scenario files and on the command line.
//!
//! They live apart from the model because the CLI parses the same spellings (`--poll-interval`,
//! `--rate`) and because their grammar, error texts and scaling are worth testing on their own.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration or a rate could not be read. Carries the fix for the user in `hint`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnitError {
    /// What is wrong, naming the bad value.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

const DURATION_HINT: &str =
    "write a number followed by a unit: `500ms`, `30s`, `2m`, `1h` or combined like `1m30s`";
const RATE_HINT: &str = "write a count per unit of time: `50/s`, `300/m`, `10/500ms`";

/// A span of time written with a unit, e.g. `30s`, `2m`, `500ms`, `1m30s`.
///
/// Bare numbers are refused on purpose: `30` could mean seconds or milliseconds, and a scenario
/// that is wrong by a factor of 1000 would still run.
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

    /// This duration multiplied by `factor` (the `--time-scale` of a run), never below 1 ms so a
    /// pace never degenerates into a busy loop. A factor that is not a positive finite number, or
    /// a product that overflows, leaves the duration unchanged.
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
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| bad("the number is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let part = match unit {
                "ms" => Some(Duration::from_millis(n)),
                "s" => Some(Duration::from_secs(n)),
                "m" => n.checked_mul(60).map(Duration::from_secs),
                "h" => n.checked_mul(3600).map(Duration::from_secs),
                "" => return Err(bad("the number has no unit")),
                other => return Err(bad(&format!("unknown unit `{other}`"))),
            };
            total = part
                .and_then(|p| total.checked_add(p))
                .ok_or_else(|| bad("it is too long"))?;
        }
        Ok(Dur(total))
    }
}

impl fmt::Display for Dur {
    /// The shortest spelling that parses back to the same value: `1m30s`, `500ms`, `0s`.
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
        text.parse().map_err(|e: UnitError| {
            serde::de::Error::custom(crate::scenario::load::with_hint(&e.message, &e.hint))
        })
    }
}

/// A pace: `count` events per `per`, written `50/s`, `300/m`, `10/500ms`.
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
        text.parse().map_err(|e: UnitError| {
            serde::de::Error::custom(crate::scenario::load::with_hint(&e.message, &e.hint))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_dur(text: &str, expect: Result<Duration, &str>) {
        let got = text.parse::<Dur>().map(Dur::get).map_err(|e| e.message);
        assert_eq!(got, expect.map_err(str::to_owned), "parsing {text:?}");
    }

    #[test]
    fn durations_parse() {
        check_dur("30s", Ok(Duration::from_secs(30)));
        check_dur("2m", Ok(Duration::from_secs(120)));
        check_dur("500ms", Ok(Duration::from_millis(500)));
        check_dur("1h", Ok(Duration::from_secs(3600)));
        check_dur("1m30s", Ok(Duration::from_secs(90)));
        check_dur("1s500ms", Ok(Duration::from_millis(1500)));
        check_dur(" 10s ", Ok(Duration::from_secs(10)));
        check_dur("0s", Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_name_the_problem() {
        check_dur("30", Err("invalid duration `30`: the number has no unit"));
        check_dur("30x", Err("invalid duration `30x`: unknown unit `x`"));
        check_dur("", Err("invalid duration ``: it is empty"));
        check_dur(
            "-5s",
            Err("invalid duration `-5s`: a duration cannot be negative"),
        );
        check_dur("s", Err("invalid duration `s`: expected a number"));
        check_dur("1.5s", Err("invalid duration `1.5s`: unknown unit `.`"));
        check_dur(
            "99999999999999999999s",
            Err("invalid duration `99999999999999999999s`: the number is too large"),
        );
    }

    #[test]
    fn durations_display_round_trips() {
        for text in ["30s", "2m", "500ms", "1h", "1m30s", "1h1m1s1ms", "0s"] {
            let d: Dur = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
        assert_eq!(Dur::secs(90).to_string(), "1m30s");
    }

    proptest::proptest! {
        /// Whatever `Display` prints, `FromStr` reads back to the same duration.
        #[test]
        fn duration_display_parses_back(ms in 0u64..=1_000_000_000_000) {
            let d = Dur::millis(ms);
            proptest::prop_assert_eq!(d.to_string().parse::<Dur>(), Ok(d));
        }

        /// The same for rates, whose period is itself a duration.
        #[test]
        fn rate_display_parses_back(count in 1u32..=100_000, ms in 1u64..=100_000_000) {
            let r = Rate { count, per: Dur::millis(ms) };
            proptest::prop_assert_eq!(r.to_string().parse::<Rate>(), Ok(r));
        }
    }

    #[test]
    fn rates_parse() {
        let r: Rate = "50/s".parse().unwrap();
        assert_eq!((r.count, r.per), (50, Dur::secs(1)));
        assert_eq!(r.interval(), Duration::from_millis(20));
        assert!((r.per_second() - 50.0).abs() < 1e-9);
        let r: Rate = "300/m".parse().unwrap();
        assert!((r.per_second() - 5.0).abs() < 1e-9);
        assert_eq!(r.interval(), Duration::from_millis(200));
        let r: Rate = "10/500ms".parse().unwrap();
        assert!((r.per_second() - 20.0).abs() < 1e-9);
        assert_eq!(r.to_string(), "10/500ms");
        assert_eq!("300/m".parse::<Rate>().unwrap().to_string(), "300/m");
        assert_eq!(
            "20/s".parse::<Rate>().unwrap().time_for(20),
            Duration::from_millis(950)
        );
        assert_eq!("20/s".parse::<Rate>().unwrap().time_for(0), Duration::ZERO);
    }

    #[test]
    fn bad_rates_name_the_problem() {
        for (text, why) in [
            ("50", "expected `<count>/<unit>`"),
            ("0/s", "the count must be at least 1"),
            ("-5/s", "the count must be a whole number"),
            ("fast/s", "the count must be a whole number"),
            ("5/fortnight", "unknown unit `fortnight`"),
            ("5/0s", "the period cannot be zero"),
        ] {
            let err = text.parse::<Rate>().unwrap_err();
            assert_eq!(err.message, format!("invalid rate `{text}`: {why}"));
            assert_eq!(err.hint, RATE_HINT);
        }
    }

    #[test]
    fn scaled_multiplies_and_floors_at_one_millisecond() {
        assert_eq!(Dur::secs(30).scaled(0.1), Dur::secs(3));
        assert_eq!(Dur::secs(30).scaled(2.0), Dur::secs(60));
        assert_eq!(Dur::millis(5).scaled(0.001), Dur::millis(1));
        assert_eq!(Dur::secs(0).scaled(0.5), Dur::secs(0));
        for silly in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Dur::secs(30).scaled(silly), Dur::secs(30), "factor {silly}");
        }
        assert_eq!(Dur(Duration::MAX).scaled(2.0), Dur(Duration::MAX));
    }
}
