//! Spark interval strings: `"10 minutes"`, `"1 hour 30 minutes"`, `"interval 5 seconds"`.

use crate::{Result, SluiceError};

/// Microseconds in one unit of each interval word Spark accepts in `window` and
/// `withWatermark`.
fn unit_micros(unit: &str) -> Option<i64> {
    let u = unit.to_ascii_lowercase();
    let u = u.strip_suffix('s').unwrap_or(&u);
    Some(match u {
        "microsecond" | "us" => 1,
        "millisecond" | "ms" => 1_000,
        "second" | "sec" => 1_000_000,
        "minute" | "min" => 60_000_000,
        "hour" => 3_600_000_000,
        "day" => 86_400_000_000,
        "week" => 7 * 86_400_000_000,
        _ => return None,
    })
}

/// Parses a Spark interval string into microseconds.
///
/// Accepts an optional leading `interval` and one or more `<integer> <unit>` pairs with
/// units microsecond(s), millisecond(s), second(s), minute(s), hour(s), day(s), week(s).
/// Months and years are refused: their length in time varies, and Spark refuses them in
/// `window` as well.
///
/// # Errors
/// [`SluiceError::InvalidArgument`] naming the string when it does not parse or is negative.
pub fn parse_interval_micros(s: &str) -> Result<i64> {
    let bad = |why: &str| {
        SluiceError::InvalidArgument(format!(
            "cannot parse interval {s:?}: {why} (expected e.g. \"10 minutes\" or \"1 hour 30 minutes\")"
        ))
    };
    let mut words = s.split_whitespace().peekable();
    if words.peek().is_some_and(|w| w.eq_ignore_ascii_case("interval")) {
        words.next();
    }
    let mut total: i64 = 0;
    let mut any = false;
    while let Some(num) = words.next() {
        let n: i64 = num.parse().map_err(|_| bad(&format!("{num:?} is not an integer")))?;
        let unit = words.next().ok_or_else(|| bad("a number without a unit"))?;
        let mul = unit_micros(unit).ok_or_else(|| {
            if unit.to_ascii_lowercase().starts_with("month") || unit.to_ascii_lowercase().starts_with("year") {
                bad("months and years are not fixed durations; use days")
            } else {
                bad(&format!("unknown unit {unit:?}"))
            }
        })?;
        total = n
            .checked_mul(mul)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("overflow"))?;
        any = true;
    }
    if !any {
        return Err(bad("empty"));
    }
    if total < 0 {
        return Err(bad("negative"));
    }
    Ok(total)
}

/// Parses a Spark interval string into milliseconds (watermark delays), truncating µs.
pub fn parse_interval_ms(s: &str) -> Result<i64> {
    Ok(parse_interval_micros(s)? / 1_000)
}

/// `ms` as a Spark interval string in its largest whole unit: `"10 minutes"`,
/// `"1 second"`, `"0 seconds"`, `"1500 milliseconds"`.
pub fn format_interval_ms(ms: i64) -> String {
    let units = [(86_400_000, "day"), (3_600_000, "hour"), (60_000, "minute"), (1000, "second")];
    if ms == 0 {
        return "0 seconds".into();
    }
    let (n, unit) = units
        .iter()
        .find(|(u, _)| ms % u == 0)
        .map(|(u, name)| (ms / u, *name))
        .unwrap_or((ms, "millisecond"));
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_spark_intervals() {
        assert_eq!(parse_interval_micros("10 minutes").unwrap(), 600_000_000);
        assert_eq!(parse_interval_micros("1 minute").unwrap(), 60_000_000);
        assert_eq!(parse_interval_micros("interval 1 hour 30 minutes").unwrap(), 5_400_000_000);
        assert_eq!(parse_interval_ms("2 seconds").unwrap(), 2_000);
        assert_eq!(parse_interval_micros("1 day").unwrap(), 86_400_000_000);
        assert!(parse_interval_micros("ten minutes").is_err());
        assert!(parse_interval_micros("10").is_err());
        assert!(parse_interval_micros("1 month").unwrap_err().to_string().contains("days"));
        assert!(parse_interval_micros("").is_err());
        assert!(parse_interval_micros("5 fortnights").is_err());
    }
}
