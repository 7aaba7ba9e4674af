//! Hand-written parsers for field text: integers, booleans, dates and timestamps (decimals
//! are parsed by the shared `etl_core::codec::parse_decimal`).
//!
//! Each takes the raw field bytes (already unquoted, already known to be UTF-8 where it
//! matters) and returns `None` when the text is not a valid value. No allocation.

/// Parse a signed decimal integer (`-12`, `+7`, `0042`) into an `i64`; `None` on any
/// other byte, on empty input or on overflow.
#[inline]
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    // Up to 18 digits cannot overflow an i64: take the fast path.
    if digits.len() <= 18 {
        let mut v: i64 = 0;
        for &b in digits {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + d as i64;
        }
        return Some(if neg { -v } else { v });
    }
    let mut v: i64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?;
        v = if neg {
            v.checked_sub(d as i64)?
        } else {
            v.checked_add(d as i64)?
        };
    }
    Some(v)
}

/// Parse an unsigned decimal integer into a `u64`.
#[inline]
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    let digits = match s.first()? {
        b'+' => &s[1..],
        _ => s,
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// Whether `s` looks like an integer (sign and digits) even if it overflowed.
pub(crate) fn looks_integer(s: &[u8]) -> bool {
    let digits = match s.first() {
        Some(b'-' | b'+') => &s[1..],
        _ => s,
    };
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// Nanoseconds in one unit of a fraction of `i` digits (`.5` is 5 × 100,000,000 ns).
const NANOS_PER_DIGIT: [i128; 10] = [
    1_000_000_000,
    100_000_000,
    10_000_000,
    1_000_000,
    100_000,
    10_000,
    1_000,
    100,
    10,
    1,
];

/// `true/false/t/f/1/0`, any case.
#[inline]
pub(crate) fn parse_bool(s: &[u8]) -> Option<bool> {
    match s.len() {
        1 => match s[0] {
            b't' | b'T' | b'1' => Some(true),
            b'f' | b'F' | b'0' => Some(false),
            _ => None,
        },
        4 if s.eq_ignore_ascii_case(b"true") => Some(true),
        5 if s.eq_ignore_ascii_case(b"false") => Some(false),
        _ => None,
    }
}

#[inline]
fn digits<const N: usize>(s: &[u8]) -> Option<u32> {
    if s.len() != N {
        return None;
    }
    let mut v = 0u32;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as u32;
    }
    Some(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i32 - 719_468
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `YYYY-MM-DD` -> days since the epoch.
#[inline]
pub(crate) fn parse_date(s: &[u8]) -> Option<i32> {
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let y = digits::<4>(&s[0..4])? as i32;
    let m = digits::<2>(&s[5..7])?;
    let d = digits::<2>(&s[8..10])?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `YYYY-MM-DD[ T]HH:MM:SS[.f{1,9}][Z|±HH:MM]` -> nanoseconds since the epoch (UTC; a
/// text without zone is taken as UTC). `None` if invalid or out of range.
pub(crate) fn parse_timestamp_nanos(s: &[u8]) -> Option<i128> {
    if s.len() < 19 {
        return None;
    }
    let days = parse_date(&s[..10])?;
    if s[10] != b'T' && s[10] != b' ' && s[10] != b't' {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let hh = digits::<2>(&s[11..13])?;
    let mm = digits::<2>(&s[14..16])?;
    let ss = digits::<2>(&s[17..19])?;
    if hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        for &b in frac {
            nanos = nanos * 10 + (b - b'0') as i128;
        }
        nanos *= NANOS_PER_DIGIT[frac.len()];
    }
    let mut offset_secs: i64 = 0;
    match &s[i..] {
        [] | [b'Z' | b'z'] => {}
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let oh = digits::<2>(&[*h1, *h2])? as i64;
            let om = digits::<2>(&[*m1, *m2])? as i64;
            if oh > 23 || om > 59 {
                return None;
            }
            offset_secs = (oh * 3600 + om * 60) * if *sign == b'+' { 1 } else { -1 };
        }
        _ => return None,
    }
    let secs = days as i64 * 86_400 + (hh * 3600 + mm * 60 + ss) as i64 - offset_secs;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-42"), Some(-42));
        assert_eq!(parse_i64(b"+7"), Some(7));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"19x5"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i64(b" 1"), None);
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"-1"), None);
        assert!(looks_integer(b"99999999999999999999"));
        assert!(!looks_integer(b"1.5"));
    }

    #[test]
    fn booleans() {
        for t in ["true", "TRUE", "t", "T", "1", "True"] {
            assert_eq!(parse_bool(t.as_bytes()), Some(true), "{t}");
        }
        for f in ["false", "F", "f", "0", "FaLsE"] {
            assert_eq!(parse_bool(f.as_bytes()), Some(false), "{f}");
        }
        assert_eq!(parse_bool(b"yes"), None);
        assert_eq!(parse_bool(b""), None);
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(parse_date(b"1970-01-01"), Some(0));
        assert_eq!(parse_date(b"2000-03-01"), Some(11_017));
        assert_eq!(parse_date(b"1969-12-31"), Some(-1));
        assert_eq!(parse_date(b"2024-02-29"), Some(19_782));
        assert_eq!(parse_date(b"2023-02-29"), None);
        assert_eq!(parse_date(b"2023-13-01"), None);
        assert_eq!(parse_date(b"2023-1-01"), None);
        let ts = |s: &str| parse_timestamp_nanos(s.as_bytes());
        assert_eq!(ts("1970-01-01T00:00:01"), Some(1_000_000_000));
        assert_eq!(ts("1970-01-01 00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            ts("2024-01-02T03:04:05.123456"),
            Some(1_704_164_645_123_456_000)
        );
        assert_eq!(ts("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(ts("1970-01-01T24:00:00"), None);
        assert_eq!(ts("1970-01-01T00:00"), None);
        assert_eq!(ts("1970-01-01T00:00:00."), None);
        assert_eq!(ts("1970-01-01T00:00:00Zx"), None);
    }
}
