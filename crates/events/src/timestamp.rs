//! Timestamps: integer milliseconds since the Unix epoch inside, RFC 3339 UTC outside.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::json::Value;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Parses an RFC 3339 timestamp (`2021-06-11T12:01:35Z`, any offset, any fraction) to
/// milliseconds, truncating below the millisecond. `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// Formats milliseconds as RFC 3339 UTC: `2021-06-11T12:01:35Z`, with `.mmm` only when the
/// milliseconds are not zero. Values outside years 0000-9999 cannot come from the parsers here;
/// they are shown as the raw number of milliseconds rather than invented.
pub fn format_millis(ms: Millis) -> String {
    /// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
    const FIRST: Millis = -62_167_219_200_000;
    const LAST: Millis = 253_402_300_799_999;
    if !(FIRST..=LAST).contains(&ms) {
        return ms.to_string();
    }
    // By hand rather than with `time` and `format!`: a journey's document holds a dozen times,
    // and the projector renders one per event; the formatting machinery was a seventh of its
    // CPU (docs/BENCHMARKS.md). The test below holds it to `time`'s calendar.
    let (day, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(day);
    let secs = in_day / 1000;
    let mut out = String::with_capacity(24);
    push_digits(&mut out, y, 4);
    out.push('-');
    push_digits(&mut out, mo, 2);
    out.push('-');
    push_digits(&mut out, d, 2);
    out.push('T');
    push_digits(&mut out, secs / 3600, 2);
    out.push(':');
    push_digits(&mut out, secs / 60 % 60, 2);
    out.push(':');
    push_digits(&mut out, secs % 60, 2);
    if in_day % 1000 != 0 {
        out.push('.');
        push_digits(&mut out, in_day % 1000, 3);
    }
    out.push('Z');
    out
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`): year, month 1-12, day 1-31.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the 400-year era, 0..=146_096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // from 1 March
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (era * 400 + yoe + i64::from(m <= 2), m, d)
}

/// `n` (0 or more, below 10^width) as exactly `width` decimal digits.
fn push_digits(out: &mut String, n: i64, width: u32) {
    let mut div = 10_i64.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + (n / div % 10) as u8));
        div /= 10;
    }
}

/// Reads an MX time: Unix seconds as a JSON integer (the documented form), a decimal number of
/// seconds, a string of digits, or an RFC 3339 string. `None` for anything else or a value
/// outside years 0000-9999.
pub fn mx_time(v: &Value<'_>) -> Option<Millis> {
    let ms = match v {
        Value::Number(n) => seconds_text_to_millis(n)?,
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            seconds_text_to_millis(s)?
        }
        Value::String(s) => parse_rfc3339(s)?,
        _ => return None,
    };
    in_range(ms).then_some(ms)
}

/// Seconds as decimal text (`1531947410`, `1531947410.25`) to milliseconds, exactly, truncating
/// below the millisecond. Exponents and overflow give `None`.
fn seconds_text_to_millis(text: &str) -> Option<Millis> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let mut milli = 0i64;
    for (i, b) in frac.bytes().take(3).enumerate() {
        milli += i64::from(b - b'0') * [100, 10, 1][i];
    }
    let ms = secs.checked_mul(1000)?.checked_add(milli)?;
    Some(if negative { -ms } else { ms })
}

fn in_range(ms: Millis) -> bool {
    // 0000-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999Z
    (-62_167_219_200_000..=253_402_300_799_999).contains(&ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;
    use proptest::prelude::*;

    /// What `format_millis` did with `time` and `format!`, kept as its oracle.
    fn with_time(ms: Millis) -> String {
        let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
            return ms.to_string();
        };
        if !(0..=9999).contains(&t.year()) {
            return ms.to_string();
        }
        let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
        let (h, mi, s) = (t.hour(), t.minute(), t.second());
        match t.millisecond() {
            0 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
            milli => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z"),
        }
    }

    proptest! {
        #[test]
        fn formatting_agrees_with_the_time_crate(
            ms in prop_oneof![
                -62_167_219_200_100..=253_402_300_800_100_i64,
                // Whole seconds and days, and the edges of the range.
                (-720_000..=2_933_000_i64).prop_map(|d| d * 86_400_000),
                (-62_167_219_200..=253_402_300_800_i64).prop_map(|s| s * 1000),
                Just(i64::MIN),
                Just(i64::MAX),
            ]
        ) {
            prop_assert_eq!(format_millis(ms), with_time(ms));
        }
    }

    #[test]
    fn formatting_handles_leap_days_and_the_ends_of_the_range() {
        for ms in [
            -62_167_219_200_001,
            -62_167_219_200_000,
            0,
            951_782_400_000,
            4_107_542_400_000,
            253_402_300_799_999,
            253_402_300_800_000,
        ] {
            assert_eq!(format_millis(ms), with_time(ms), "{ms}");
        }
        assert_eq!(format_millis(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_millis(-62_167_219_200_000), "0000-01-01T00:00:00Z");
        assert_eq!(
            format_millis(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(format_millis(253_402_300_800_000), "253402300800000");
    }

    #[test]
    fn rfc3339_round_trips_with_millis_only_when_nonzero() {
        let ms = parse_rfc3339("2021-06-11T12:01:35Z").expect("valid");
        assert_eq!(ms, 1_623_412_895_000);
        assert_eq!(format_millis(ms), "2021-06-11T12:01:35Z");
        assert_eq!(format_millis(ms + 7), "2021-06-11T12:01:35.007Z");
        assert_eq!(
            parse_rfc3339("2021-06-11T13:01:35.1239+01:00"),
            Some(ms + 123)
        );
        assert_eq!(parse_rfc3339("2021-06-11 12:01:35"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn mx_times_accept_seconds_in_several_spellings() {
        let t = |s: &str| mx_time(&parse(s).expect("json"));
        assert_eq!(t("1531947410"), Some(1_531_947_410_000));
        assert_eq!(t("1531947410.25"), Some(1_531_947_410_250));
        assert_eq!(t("\"1531947410\""), Some(1_531_947_410_000));
        assert_eq!(t("\"2018-07-18T20:56:50Z\""), Some(1_531_947_410_000));
        assert_eq!(t("1e9"), None);
        assert_eq!(t("null"), None);
        assert_eq!(t("99999999999999999999"), None);
        assert_eq!(t("9999999999999"), None, "beyond year 9999");
        assert_eq!(
            format_millis(t("0").expect("epoch")),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn out_of_range_millis_are_shown_raw_not_invented() {
        assert_eq!(format_millis(i64::MAX), i64::MAX.to_string());
    }
}
