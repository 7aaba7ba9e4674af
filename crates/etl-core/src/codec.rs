//! Text codecs shared by every source and sink, with no I/O and no database dependency:
//! decimal text into scaled integers ([`parse_decimal`], for Arrow `Decimal128`) or into
//! exact digits and scale ([`parse_decimal_digits`], for PostgreSQL's binary `numeric`).
//!
//! One scanner underneath: it takes bytes (the CSV decoder calls it on raw field bytes,
//! 700k rows/s, with no allocation and no UTF-8 check), accepts `-12.50`, `+7`, `.5`,
//! `3.`, `1e+05`, `1.5E-3`, and keeps at most 38 significant digits (what `i128` and
//! `Decimal128` hold). It does not trim white space: callers that accept padded text trim
//! it first.

use std::fmt;

/// Why decimal text did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Not decimal syntax (`abc`, `1.2.3`, `1e`, `.`, `NaN`, empty).
    Syntax,
    /// More fractional digits than the scale, and not all zeros ([`Rounding::Exact`]).
    Scale,
    /// More significant digits than the precision.
    Precision,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecimalError::Syntax => "not a decimal number",
            DecimalError::Scale => "more decimal places than the scale (it would be rounded)",
            DecimalError::Precision => "more digits than the precision",
        })
    }
}

impl std::error::Error for DecimalError {}

/// What [`parse_decimal`] does with digits beyond the scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Never round: digits beyond the scale must be zeros, else [`DecimalError::Scale`].
    Exact,
    /// Round half away from zero (`0.005` -> `0.01`, `-0.005` -> `-0.01` at scale 2), as
    /// PostgreSQL's `numeric` does.
    HalfAwayFromZero,
}

/// `10^i` for `i` in `0..=38`.
const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// Decimal text, scanned: `±mant × 10^(exp + dropped)`.
struct Scan {
    neg: bool,
    /// The first (at most) 38 significant digits.
    mant: i128,
    /// Significant digits in `mant`.
    sig: usize,
    /// Significant digits that did not fit in `mant` (each one a power of ten).
    dropped: i32,
    /// Whether any dropped digit is not zero.
    dropped_nonzero: bool,
    /// The first dropped digit (for rounding).
    first_dropped: u8,
    /// Power of ten of `mant`'s last digit, before `dropped`.
    exp: i32,
}

#[inline]
fn scan(s: &[u8]) -> Result<Scan, DecimalError> {
    use DecimalError::Syntax;
    let (neg, rest) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        Some(_) => (false, s),
        None => return Err(Syntax),
    };
    let mut sc = Scan {
        neg,
        mant: 0,
        sig: 0,
        dropped: 0,
        dropped_nonzero: false,
        first_dropped: 0,
        exp: 0,
    };
    let mut any_digit = false;
    let mut i = 0;
    let n = rest.len();
    while i < n && rest[i].is_ascii_digit() {
        push_digit(rest[i], &mut sc);
        any_digit = true;
        i += 1;
    }
    if i < n && rest[i] == b'.' {
        i += 1;
        while i < n && rest[i].is_ascii_digit() {
            push_digit(rest[i], &mut sc);
            sc.exp -= 1;
            any_digit = true;
            i += 1;
        }
    }
    if !any_digit {
        return Err(Syntax);
    }
    if i < n && (rest[i] == b'e' || rest[i] == b'E') {
        i += 1;
        let eneg = match rest.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        let mut e: i32 = 0;
        while i < n && rest[i].is_ascii_digit() {
            e = e.saturating_mul(10).saturating_add((rest[i] - b'0') as i32);
            i += 1;
        }
        if i == start {
            return Err(Syntax);
        }
        sc.exp = sc.exp.saturating_add(if eneg { -e } else { e });
    }
    if i != n {
        return Err(Syntax);
    }
    Ok(sc)
}

#[inline]
fn push_digit(b: u8, sc: &mut Scan) {
    let d = b - b'0';
    if sc.sig == 0 && d == 0 {
        // Leading zero: contributes nothing (its position is kept by `exp`).
        return;
    }
    if sc.sig < 38 {
        sc.mant = sc.mant * 10 + d as i128;
        sc.sig += 1;
    } else {
        if sc.dropped == 0 {
            sc.first_dropped = d;
        }
        sc.dropped += 1;
        if d != 0 {
            sc.dropped_nonzero = true;
        }
    }
}

/// Parse decimal text (`-12.50`, `1e+05`, `.5`, `3.`) into the mantissa of a
/// `Decimal128(precision, scale)`: the value × 10^`scale`. A negative scale rounds to
/// tens, hundreds...; `precision` above 38 counts as 38.
///
/// # Errors
/// [`DecimalError::Syntax`] for text that is not a number; [`DecimalError::Scale`] for
/// non-zero digits beyond the scale with [`Rounding::Exact`]; [`DecimalError::Precision`]
/// when the value needs more than `precision` digits.
///
/// # Examples
/// ```
/// use etl_core::codec::{DecimalError, Rounding, parse_decimal};
/// assert_eq!(parse_decimal(b"-12.5", 10, 2, Rounding::Exact), Ok(-1250));
/// assert_eq!(parse_decimal(b"0.125", 10, 2, Rounding::Exact), Err(DecimalError::Scale));
/// assert_eq!(parse_decimal(b"0.125", 10, 2, Rounding::HalfAwayFromZero), Ok(13));
/// ```
#[inline]
pub fn parse_decimal(
    s: &[u8],
    precision: u8,
    scale: i8,
    rounding: Rounding,
) -> Result<i128, DecimalError> {
    use DecimalError::*;
    let Scan {
        neg,
        mut mant,
        mut sig,
        dropped,
        dropped_nonzero,
        first_dropped,
        exp,
    } = scan(s)?;
    if mant == 0 {
        return Ok(0);
    }
    let precision = precision.min(38) as i32;
    // Value = mant * 10^(exp + dropped); stored = value * 10^scale.
    let mut shift = exp.saturating_add(dropped).saturating_add(scale as i32);
    let v = match rounding {
        Rounding::Exact => {
            if dropped_nonzero {
                // Dropped digits were beyond 38 significant ones: the value needs more
                // precision than any Decimal128 unless they are fractional and past the scale.
                return Err(if exp + dropped < 0 { Scale } else { Precision });
            }
            // Trailing zeros of the mantissa can absorb a negative shift exactly.
            while shift < 0 && mant % 10 == 0 {
                mant /= 10;
                sig -= 1;
                shift += 1;
            }
            if shift < 0 {
                return Err(Scale);
            }
            if sig as i32 + shift > precision {
                return Err(Precision);
            }
            mant * POW10[shift as usize]
        }
        Rounding::HalfAwayFromZero => {
            let v = if shift > 0 {
                if dropped_nonzero || sig as i32 + shift > precision {
                    return Err(Precision);
                }
                mant * POW10[shift as usize]
            } else if shift == 0 {
                // Every kept digit is in the scale; the first dropped one decides.
                mant + i128::from(first_dropped >= 5)
            } else if shift < -38 {
                0 // below half a unit of the scale: mant < 10^38
            } else {
                // Digits dropped past `mant` cannot turn a remainder below half into half
                // or more: the divisor is even, so `2 × rem <= div - 2`.
                let div = POW10[(-shift) as usize];
                let (q, rem) = (mant / div, mant % div);
                q + i128::from(rem >= div - rem)
            };
            if v >= POW10[precision as usize] {
                return Err(Precision);
            }
            v
        }
    };
    Ok(if neg { -v } else { v })
}

/// Decimal text as exact digits: `±digits × 10^-scale`, with the text's own scale
/// (`25.50` is `2550` at scale 2). What PostgreSQL's binary `numeric` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalDigits {
    /// A minus sign.
    pub negative: bool,
    /// The digits, without sign or point.
    pub digits: u128,
    /// Digits after the point.
    pub scale: u32,
}

/// Parse decimal text (`-12.50`, `1e+05`, `.5`) exactly, keeping its scale (a positive
/// exponent multiplies the digits: `1e+05` is `100000` at scale 0).
///
/// # Errors
/// [`DecimalError::Syntax`] for text that is not a number; [`DecimalError::Precision`]
/// for more than 38 significant digits.
///
/// # Examples
/// ```
/// use etl_core::codec::{DecimalDigits, parse_decimal_digits};
/// assert_eq!(
///     parse_decimal_digits(b"-0.0050"),
///     Ok(DecimalDigits { negative: true, digits: 50, scale: 4 })
/// );
/// ```
pub fn parse_decimal_digits(s: &[u8]) -> Result<DecimalDigits, DecimalError> {
    let sc = scan(s)?;
    if sc.dropped > 0 {
        return Err(DecimalError::Precision);
    }
    let mut digits = sc.mant as u128;
    let scale = if sc.exp < 0 {
        sc.exp.unsigned_abs()
    } else {
        digits = 10u128
            .checked_pow(sc.exp as u32)
            .and_then(|p| digits.checked_mul(p))
            .ok_or(DecimalError::Precision)?;
        0
    };
    Ok(DecimalDigits {
        negative: sc.neg,
        digits,
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DecimalError::*;

    fn exact(s: &str, p: u8, sc: i8) -> Result<i128, DecimalError> {
        parse_decimal(s.as_bytes(), p, sc, Rounding::Exact)
    }

    fn round(s: &str, p: u8, sc: i8) -> Result<i128, DecimalError> {
        parse_decimal(s.as_bytes(), p, sc, Rounding::HalfAwayFromZero)
    }

    // From source-csv (the CSV decoder's exact parser).
    #[test]
    fn decimals_are_exact() {
        let p = |s: &str| exact(s, 38, 10);
        assert_eq!(p("1"), Ok(10_000_000_000));
        assert_eq!(p("-12.5"), Ok(-125_000_000_000));
        assert_eq!(p("0.0000000001"), Ok(1));
        assert_eq!(p(".5"), Ok(5_000_000_000));
        assert_eq!(p("3."), Ok(30_000_000_000));
        assert_eq!(p("1e+05"), Ok(100_000 * 10_000_000_000));
        assert_eq!(p("1.5E-3"), Ok(15_000_000));
        assert_eq!(p("2500000000.123"), Ok(25_000_000_001_230_000_000));
        assert_eq!(p("0.00000000001"), Err(Scale));
        assert_eq!(p("1.12345678901"), Err(Scale));
        assert_eq!(p("1.50000000000000"), Ok(15_000_000_000));
        assert_eq!(p("1e28"), Err(Precision));
        assert_eq!(
            p("9999999999999999999999999999.9999999999"),
            Ok(10i128.pow(38) - 1)
        );
        assert_eq!(
            p("0000000000000000000000000000000000000000001"),
            Ok(10_000_000_000)
        );
        assert_eq!(p("abc"), Err(Syntax));
        assert_eq!(p("1.2.3"), Err(Syntax));
        assert_eq!(p("1e"), Err(Syntax));
        assert_eq!(p("."), Err(Syntax));
        assert_eq!(p("-"), Err(Syntax));
        assert_eq!(p("0"), Ok(0));
        assert_eq!(p("-0.0"), Ok(0));
        assert_eq!(exact("123.45", 5, 2), Ok(12345));
        assert_eq!(exact("1234.5", 5, 2), Err(Precision));
        assert_eq!(exact("1200", 4, -2), Ok(12));
    }

    // From source-postgres (numeric text read from PostgreSQL, rounded to the column's scale).
    #[test]
    fn decimals_parse_with_scale_and_rounding() {
        assert_eq!(round("25.50", 12, 2), Ok(2550));
        assert_eq!(round("25.5", 12, 2), Ok(2550));
        assert_eq!(round("-0.005", 12, 2), Ok(-1));
        assert_eq!(round("0.004", 12, 2), Ok(0));
        assert_eq!(round("1000", 12, 2), Ok(100_000));
        assert_eq!(round("NaN", 12, 2), Err(Syntax));
        assert_eq!(round("Infinity", 12, 2), Err(Syntax));
        assert_eq!(round("123456", 5, 0), Err(Precision));
        assert_eq!(round("1250", 5, -2), Ok(13));
        assert_eq!(round("99.995", 4, 2), Err(Precision));
        assert_eq!(
            round("0.0000000000000000000000000000000000000000005", 38, 2),
            Ok(0)
        );
        // 38 digits kept, the 39th decides.
        assert_eq!(
            round("99999999999999999999999999999999999999.5", 38, 0),
            Err(Precision)
        );
        assert_eq!(
            round("1234567890123456789012345678901234567.85", 38, 0),
            Ok(1234567890123456789012345678901234568)
        );
    }

    // From source-bubble (exact decimals of the Bubble API).
    #[test]
    fn decimals_are_exact_or_errors() {
        assert_eq!(exact("45.5", 10, 2), Ok(4550));
        assert_eq!(exact("-0.01", 10, 2), Ok(-1));
        assert_eq!(exact("100.000", 10, 2), Ok(10000));
        assert_eq!(exact("49.999", 10, 2), Err(Scale));
        assert_eq!(exact("123456789", 10, 2), Err(Precision));
        assert_eq!(exact("1e2", 10, 2), Ok(10000));
    }

    // From sink-postgres (decimal text written as binary numeric).
    #[test]
    fn digits_keep_the_text_scale() {
        let d = |s: &str| parse_decimal_digits(s.as_bytes());
        let dd = |negative, digits, scale| {
            Ok(DecimalDigits {
                negative,
                digits,
                scale,
            })
        };
        assert_eq!(d("12.5"), dd(false, 125, 1));
        assert_eq!(d("25.50"), dd(false, 2550, 2));
        assert_eq!(d("1e+05"), dd(false, 100_000, 0));
        assert_eq!(d("-0.0005"), dd(true, 5, 4));
        assert_eq!(d("1.5e-3"), dd(false, 15, 4));
        assert_eq!(d("0"), dd(false, 0, 0));
        assert_eq!(d("1.2.3"), Err(Syntax));
        assert_eq!(d("abc"), Err(Syntax));
        assert_eq!(d(&"1".repeat(39)), Err(Precision));
        assert_eq!(d("1e40"), Err(Precision));
    }
}
