//! Durations as Kubernetes writes them (`30m`, `24h`, `1h30m`): the Go
//! `time.ParseDuration` syntax, which CEL's `duration()` also accepts, so the
//! API server and credshift agree on what a spec means.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pattern for the schema; the API server checks it before CEL runs.
pub const GO_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A duration string in Go syntax, e.g. `24h` or `1h30m`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct GoDuration(#[schemars(pattern(GO_DURATION_PATTERN), length(max = 32))] pub String);

impl GoDuration {
    pub fn new(s: &str) -> GoDuration {
        GoDuration(s.to_owned())
    }

    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_go_duration(&self.0)
    }
}

/// Why a string is not a Go duration credshift accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{0:?} is not a duration like 30m, 24h or 1h30m")]
    Syntax(String),
    #[error("{0:?} is longer than 100 years")]
    TooLong(String),
}

/// Parses `[0-9]+(.[0-9]+)?(ns|us|µs|ms|s|m|h)` repeated, like Go. No sign:
/// every credshift duration is a length of time.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError::Syntax(s.to_owned());
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = tail;
    }
    if !total.is_finite() || total > 100.0 * 365.0 * 86400.0 {
        return Err(DurationError::TooLong(s.to_owned()));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_go_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "1d", "-1h", "h", "1 h", "1h30", "abc"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pattern_constant_matches_the_schema_attribute() {
        let schema = schemars::schema_for!(GoDuration);
        assert_eq!(
            schema.get("pattern").and_then(|p| p.as_str()),
            Some(GO_DURATION_PATTERN)
        );
    }
}
