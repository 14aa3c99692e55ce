//! Lexing JSON numbers: read as decimal text and written in canonical form without
//! going through `f64`.
use crate::error::ScanError;

/// Largest exponent magnitude kept exactly while reading; anything beyond is out of
/// range whatever the digit count, and saturating here keeps the arithmetic in `i128`.
const EXP_CAP: i128 = 1 << 100;
/// Canonical exponents beyond this are refused, so that every consumer can hold them.
pub const MAX_EXPONENT: i128 = 1_000_000_000;

#[inline]
fn digits_end(input: &[u8], mut p: usize) -> usize {
    while input.get(p).is_some_and(u8::is_ascii_digit) {
        p += 1;
    }
    p
}

/// Reads the number at `start` and appends its canonical form to `out`: `0` for any
/// zero, else `[-]<d>e<e>` with `d` free of leading and trailing zeros. Returns the
/// offset after the number.
pub(crate) fn number(input: &[u8], start: usize, out: &mut Vec<u8>) -> Result<usize, ScanError> {
    let mut p = start;
    let neg = input.get(p) == Some(&b'-');
    if neg {
        p += 1;
    }
    let int_start = p;
    match input.get(p) {
        Some(b'0') => p += 1,
        Some(b'1'..=b'9') => p = digits_end(input, p + 1),
        _ => return Err(ScanError::json(p, "invalid number")),
    }
    let int = &input[int_start..p];
    let mut frac: &[u8] = &[];
    if input.get(p) == Some(&b'.') {
        let fs = p + 1;
        p = digits_end(input, fs);
        if p == fs {
            return Err(ScanError::json(
                p,
                "invalid number: digit expected after '.'",
            ));
        }
        frac = &input[fs..p];
    }
    let mut exp: i128 = 0;
    if matches!(input.get(p), Some(b'e' | b'E')) {
        p += 1;
        let eneg = match input.get(p) {
            Some(b'-') => {
                p += 1;
                true
            }
            Some(b'+') => {
                p += 1;
                false
            }
            _ => false,
        };
        let es = p;
        while let Some(&d) = input.get(p).filter(|d| d.is_ascii_digit()) {
            exp = (exp * 10 + i128::from(d - b'0')).min(EXP_CAP);
            p += 1;
        }
        if p == es {
            return Err(ScanError::json(
                p,
                "invalid number: digit expected in exponent",
            ));
        }
        if eneg {
            exp = -exp;
        }
    }

    // Significant digits run from the first to the last non-zero digit of int ++ frac.
    let first = if let Some(i) = int.iter().position(|&b| b != b'0') {
        (false, i)
    } else if let Some(i) = frac.iter().position(|&b| b != b'0') {
        (true, i)
    } else {
        out.push(b'0');
        return Ok(p);
    };
    let last = match frac.iter().rposition(|&b| b != b'0') {
        Some(i) => (true, i),
        // A non-zero digit exists, and frac has none, so it is in int.
        None => (false, int.iter().rposition(|&b| b != b'0').unwrap_or(0)),
    };
    let trailing_zeros = if last.0 {
        frac.len() - 1 - last.1
    } else {
        int.len() - 1 - last.1 + frac.len()
    };
    let e = exp - frac.len() as i128 + trailing_zeros as i128;
    if e.abs() > MAX_EXPONENT {
        return Err(ScanError::json(start, "number out of range"));
    }
    if neg {
        out.push(b'-');
    }
    match (first, last) {
        ((false, f), (false, l)) => out.extend_from_slice(&int[f..=l]),
        ((false, f), (true, l)) => {
            out.extend_from_slice(&int[f..]);
            out.extend_from_slice(&frac[..=l]);
        }
        ((true, f), (true, l)) => out.extend_from_slice(&frac[f..=l]),
        // The first significant digit cannot come after the last one.
        ((true, _), (false, _)) => {}
    }
    out.push(b'e');
    push_i64(out, e as i64);
    Ok(p)
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    let mut n = v.unsigned_abs();
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}
