//! RFC 3339 timestamps in JSON, unix seconds in storage.
//!
//! Only UTC is written (`2026-11-23T18:40:43Z`). Reading accepts a full date-time
//! with `Z` or a numeric offset, fractional seconds (truncated), or a plain date
//! (`2027-01-31`), which means 00:00:00 UTC that day.

use core::fmt;

/// Why a string is not an RFC 3339 date or date-time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError(&'static str);

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Formats unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn format(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parses an RFC 3339 date-time or a plain `YYYY-MM-DD` date into unix seconds
/// (fractional seconds truncated).
pub fn parse(s: &str) -> Result<i64, TimeError> {
    parse_parts(s).map(|(secs, _)| secs)
}

/// [`parse`] to unix milliseconds, keeping the first three fractional digits
/// (access-log times).
pub fn parse_ms(s: &str) -> Result<i64, TimeError> {
    let (secs, ms) = parse_parts(s)?;
    secs.checked_mul(1_000)
        .and_then(|t| t.checked_add(ms))
        .ok_or(TimeError("time out of range"))
}

/// Unix seconds and the milliseconds of the fraction.
fn parse_parts(s: &str) -> Result<(i64, i64), TimeError> {
    let b = s.as_bytes();
    if b.len() < 10 {
        return Err(TimeError("expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"));
    }
    let year = digits(b, 0, 4)?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    if !(1..=12).contains(&month) {
        return Err(TimeError("month must be 01-12"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(TimeError("day does not exist in that month"));
    }
    let date = days_from_civil(year, month, day) * 86_400;
    if b.len() == 10 {
        return Ok((date, 0));
    }
    if !matches!(b[10], b'T' | b't') {
        return Err(TimeError(
            "date and time must be separated by 'T' (YYYY-MM-DDTHH:MM:SSZ)",
        ));
    }
    if b.len() < 20 {
        return Err(TimeError(
            "time must be HH:MM:SS followed by Z or an offset",
        ));
    }
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b':')?;
    let second = digits(b, 17, 2)?;
    if hour > 23 || minute > 59 || second > 60 {
        return Err(TimeError("time of day out of range"));
    }
    let mut at = 19;
    let mut ms = 0;
    if b[at] == b'.' {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            if at - start < 3 {
                ms = ms * 10 + i64::from(b[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return Err(TimeError("fractional seconds need at least one digit"));
        }
        for _ in (at - start)..3 {
            ms *= 10;
        }
    }
    let offset = match b.get(at..) {
        Some([b'Z' | b'z']) => 0,
        Some([sign @ (b'+' | b'-'), rest @ ..]) if rest.len() == 5 && rest[2] == b':' => {
            let oh = digits(rest, 0, 2)?;
            let om = digits(rest, 3, 2)?;
            if oh > 23 || om > 59 {
                return Err(TimeError("offset out of range"));
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return Err(TimeError("time must end with Z or an offset like +02:00")),
    };
    Ok((date + hour * 3600 + minute * 60 + second - offset, ms))
}

fn digits(b: &[u8], at: usize, len: usize) -> Result<i64, TimeError> {
    let field = b
        .get(at..at + len)
        .ok_or(TimeError("expected YYYY-MM-DDTHH:MM:SSZ"))?;
    field.iter().try_fold(0i64, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + i64::from(c - b'0'))
        } else {
            Err(TimeError("expected digits in YYYY-MM-DDTHH:MM:SSZ"))
        }
    })
}

fn expect(b: &[u8], at: usize, c: u8) -> Result<(), TimeError> {
    if b.get(at) == Some(&c) {
        Ok(())
    } else {
        Err(TimeError("expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"))
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Proleptic Gregorian day counts (H. Hinnant's algorithms): exact for every
// year, no tables, no dependency.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format(0), "1970-01-01T00:00:00Z");
        assert_eq!(format(1_795_459_243), "2026-11-23T18:40:43Z");
        assert_eq!(format(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parse_inverts_format_over_a_wide_range() {
        // Every ~13 days across 1900..2200, including leap days and century years.
        let mut t = -2_208_988_800i64;
        while t < 7_258_118_400 {
            assert_eq!(parse(&format(t)), Ok(t), "{}", format(t));
            t += 1_123_457;
        }
    }

    #[test]
    fn parses_dates_offsets_and_fractions() {
        assert_eq!(parse("2026-11-23T18:40:43Z"), Ok(1_795_459_243));
        assert_eq!(parse("2026-11-23t18:40:43z"), Ok(1_795_459_243));
        assert_eq!(parse("2026-11-23T18:40:43.999Z"), Ok(1_795_459_243));
        assert_eq!(parse("2026-11-23T20:40:43+02:00"), Ok(1_795_459_243));
        assert_eq!(parse("2026-11-23T17:10:43-01:30"), Ok(1_795_459_243));
        assert_eq!(parse("2026-11-23"), Ok(1_795_392_000));
        assert_eq!(parse("2024-02-29"), Ok(1_709_164_800));
    }

    #[test]
    fn parse_ms_keeps_three_fractional_digits() {
        assert_eq!(parse_ms("2026-11-23T18:40:43Z"), Ok(1_795_459_243_000));
        assert_eq!(parse_ms("2026-11-23T18:40:43.5Z"), Ok(1_795_459_243_500));
        assert_eq!(parse_ms("2026-11-23T18:40:43.12Z"), Ok(1_795_459_243_120));
        assert_eq!(
            parse_ms("2026-11-23T18:40:43.123999Z"),
            Ok(1_795_459_243_123)
        );
        assert_eq!(
            parse_ms("2026-11-23T20:40:43.007+02:00"),
            Ok(1_795_459_243_007)
        );
        assert_eq!(parse_ms("2026-11-23"), Ok(1_795_392_000_000));
        assert!(parse_ms("2026-11-23T18:40:43.Z").is_err());
    }

    #[test]
    fn rejects_malformed_or_impossible_times() {
        for bad in [
            "",
            "2026",
            "2026-1-01",
            "2026-13-01",
            "2026-02-29",
            "2026-04-31",
            "2026-00-10",
            "2026-11-23 18:40:43Z",
            "2026-11-23T18:40:43",
            "2026-11-23T24:00:00Z",
            "2026-11-23T18:60:00Z",
            "2026-11-23T18:40:43.Z",
            "2026-11-23T18:40:43+0200",
            "2026-11-23T18:40:43+24:00",
            "2026-11-23T18:40Z",
            "2026-11-23Tab:cd:efZ",
            "2026-11-23T18:40:43Zjunk",
            "٢٠٢٦-11-23",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
