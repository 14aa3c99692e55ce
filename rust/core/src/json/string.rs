//! Lexing JSON strings: finding their end, decoding escapes, and writing their
//! canonical form.
//!
//! String contents are searched eight bytes at a time for `"`, `\` and control
//! characters; the bytes between escapes are kept as they are (the whole input is
//! UTF-8-validated once, before parsing), a string whose escapes are all canonical
//! already is kept whole, and only the other escapes are decoded.
use memchr::memchr2;

use crate::error::ScanError;

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Bit 7 of each byte of `word` (little-endian order) that is `"`, `\\` or a control
/// character (< 0x20). Bytes above the lowest flagged one may be flagged falsely (a
/// borrow runs upward), so only the lowest flag is meaningful.
#[inline]
fn special_bits(word: u64) -> u64 {
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    (zero(quote) | zero(backslash) | word.wrapping_sub(ONES * 0x20)) & !word & HIGHS
}

/// Offset of the first `"`, `\\` or control character at or after `start`.
///
/// One pass, eight bytes at a time (SWAR, no `unsafe`): strings in chat bodies have an
/// escape every few dozen bytes, so a search that costs a call and a separate control
/// character check per run was most of the scan.
#[allow(
    clippy::inline_always,
    reason = "the per-escape loop of every string scan"
)]
#[inline(always)]
pub(crate) fn find_special(input: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    while let Some(Ok(word)) = input.get(i..i + 8).map(<[u8; 8]>::try_from) {
        let bits = special_bits(u64::from_le_bytes(word));
        if bits != 0 {
            return Some(i + (bits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    input
        .get(i..)?
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|k| i + k)
}

/// Where the string whose contents start at `start` (just after the opening quote)
/// stops being plain: the offset of its closing quote (`false`) or of its first
/// backslash (`true`). Control characters before that point are an error.
// Inlined into each string loop: a call per escape (with its register saves) was a
// good part of the cost of an escape-dense string.
#[allow(clippy::inline_always, reason = "see above: measured, not guessed")]
#[inline(always)]
pub(crate) fn find_plain(input: &[u8], start: usize) -> Result<(usize, bool), ScanError> {
    match find_special(input, start) {
        Some(i) if input[i] == b'"' => Ok((i, false)),
        Some(i) if input[i] == b'\\' => Ok((i, true)),
        found => Err(plain_error(input, found)),
    }
}

#[cold]
#[inline(never)]
fn plain_error(input: &[u8], found: Option<usize>) -> ScanError {
    match found {
        // With no quote or backslash anywhere after it, the string is unterminated
        // rather than holding a control character (the error the offsets pin).
        Some(i) if memchr2(b'"', b'\\', &input[i..]).is_some() => {
            ScanError::json(i, "control character in string")
        }
        _ => ScanError::json(input.len(), "unterminated string"),
    }
}

/// Receives the decoded contents of a string: runs of bytes copied from the input (never
/// containing `"`, `\` or control characters) and single decoded escape code points.
pub(crate) trait Sink {
    fn raw(&mut self, bytes: &[u8]);
    fn ch(&mut self, c: u32);
}

/// Decodes to plain UTF-8.
pub(crate) struct Decode<'v>(pub &'v mut Vec<u8>);

impl Sink for Decode<'_> {
    #[inline]
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    #[inline]
    fn ch(&mut self, c: u32) {
        push_utf8(self.0, c);
    }
}

/// Writes the canonical escaped form (see [`canon_char`]).
pub(crate) struct Canonical<'v>(pub &'v mut Vec<u8>);

impl Sink for Canonical<'_> {
    #[inline]
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    #[inline]
    fn ch(&mut self, c: u32) {
        canon_char(self.0, c);
    }
}

#[inline]
fn push_utf8(out: &mut Vec<u8>, c: u32) {
    // Surrogates never reach here (the escape decoder pairs or rejects them).
    // Byte pushes of a known count: a slice copy of 1-4 bytes became a memcpy call.
    if let Some(ch) = char::from_u32(c) {
        let mut tmp = [0u8; 4];
        match *ch.encode_utf8(&mut tmp).as_bytes() {
            [a] => out.push(a),
            [a, b] => out.extend_from_slice(&[a, b]),
            [a, b, c] => out.extend_from_slice(&[a, b, c]),
            [a, b, c, d] => out.extend_from_slice(&[a, b, c, d]),
            _ => {}
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends code point `c` in canonical string form: `\"`, `\\`, the short escapes for
/// the control characters that have one, `\u00xx` (lowercase) for the other control
/// characters, and literal UTF-8 for everything else.
#[inline]
pub(crate) fn canon_char(out: &mut Vec<u8>, c: u32) {
    match c {
        0x22 => out.extend_from_slice(b"\\\""),
        0x5C => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0C => out.extend_from_slice(b"\\f"),
        0x0A => out.extend_from_slice(b"\\n"),
        0x0D => out.extend_from_slice(b"\\r"),
        0x09 => out.extend_from_slice(b"\\t"),
        c if c < 0x20 => {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 15) as usize]);
        }
        c => push_utf8(out, c),
    }
}

/// Appends already-decoded UTF-8 `bytes` in canonical string form.
pub(crate) fn canon_decoded(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b < 0x20 || b == b'"' || b == b'\\' {
            canon_char(out, u32::from(b));
        } else {
            out.push(b);
        }
    }
}

/// Value of each hex digit; 0xFF for every other byte.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xFF; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

#[inline]
fn hex4(input: &[u8], pos: usize) -> Option<u32> {
    let [a, b, c, d] = *input.get(pos..pos + 4)?.first_chunk::<4>()?;
    let [a, b, c, d] = [a, b, c, d].map(|x| HEX_VALUE[usize::from(x)]);
    if (a | b | c | d) > 15 {
        return None;
    }
    Some(u32::from(a) << 12 | u32::from(b) << 8 | u32::from(c) << 4 | u32::from(d))
}

/// Decodes the escape at `p` (a backslash) into `sink`; returns the offset after it.
fn escape<S: Sink>(input: &[u8], p: usize, sink: &mut S) -> Result<usize, ScanError> {
    let Some(&e) = input.get(p + 1) else {
        return Err(ScanError::json(input.len(), "unterminated string"));
    };
    let c = match e {
        b'"' => 0x22,
        b'\\' => 0x5C,
        b'/' => 0x2F,
        b'b' => 0x08,
        b'f' => 0x0C,
        b'n' => 0x0A,
        b'r' => 0x0D,
        b't' => 0x09,
        b'u' => {
            let hi = hex4(input, p + 2).ok_or_else(|| ScanError::json(p, "invalid \\u escape"))?;
            if (0xD800..0xDC00).contains(&hi) {
                if input.get(p + 6) == Some(&b'\\') && input.get(p + 7) == Some(&b'u') {
                    let lo = hex4(input, p + 8)
                        .ok_or_else(|| ScanError::json(p + 6, "invalid \\u escape"))?;
                    if (0xDC00..0xE000).contains(&lo) {
                        sink.ch(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
                        return Ok(p + 12);
                    }
                }
                return Err(lone_surrogate(p));
            }
            if (0xDC00..0xE000).contains(&hi) {
                return Err(lone_surrogate(p));
            }
            sink.ch(hi);
            return Ok(p + 6);
        }
        _ => return Err(ScanError::json(p, "invalid escape")),
    };
    sink.ch(c);
    Ok(p + 2)
}

fn lone_surrogate(p: usize) -> ScanError {
    ScanError::new(
        crate::error::ScanErrorKind::LoneSurrogate,
        p,
        "lone surrogate escape",
    )
}

/// Decodes the rest of a string from `p` (inside the string, at or before its first
/// backslash) into `sink`; returns the offset after the closing quote.
pub(crate) fn string_tail<S: Sink>(
    input: &[u8],
    mut p: usize,
    sink: &mut S,
) -> Result<usize, ScanError> {
    loop {
        let (stop, is_escape) = find_plain(input, p)?;
        sink.raw(&input[p..stop]);
        if !is_escape {
            return Ok(stop + 1);
        }
        p = escape(input, stop, sink)?;
    }
}

/// Where a string stops being its own canonical form.
pub(crate) enum Verbatim {
    /// The whole string is canonical as written: its closing quote is at `end`;
    /// `escaped` says whether it holds (canonical) escapes.
    Whole { end: usize, escaped: bool },
    /// The backslash at `from` starts the first escape that is not canonical (or not
    /// valid: decoding from there reports it).
    Until { from: usize },
}

/// Whether the escape whose letter is `letter` is written as canonical JSON writes it.
#[inline]
fn is_canonical_escape(letter: Option<&u8>) -> bool {
    matches!(
        letter,
        Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't')
    )
}

/// How much of the string whose contents start at `start` is canonical as written:
/// raw UTF-8 and the escapes `\" \\ \b \f \n \r \t` are, so such a string can be
/// referenced or copied whole instead of being decoded and re-escaped. `\/` and every
/// `\u` escape are left to [`canonical_tail`] (a `\u00xx` control escape may already be
/// canonical, but it is rare, and decoding re-writes it identically).
#[inline]
pub(crate) fn verbatim(input: &[u8], start: usize) -> Result<Verbatim, ScanError> {
    let mut q = start;
    let mut escaped = false;
    loop {
        let (stop, is_escape) = find_plain(input, q)?;
        if !is_escape {
            return Ok(Verbatim::Whole { end: stop, escaped });
        }
        if !is_canonical_escape(input.get(stop + 1)) {
            return Ok(Verbatim::Until { from: stop });
        }
        escaped = true;
        q = stop + 2;
    }
}

/// Writes the canonical form of the rest of a string from `p` (inside the string, not
/// inside an escape) to `out`, closing quote excluded; returns the offset after the
/// closing quote. Canonical escapes stay in the run copied from the input, so only the
/// others are decoded and re-written.
pub(crate) fn canonical_tail(
    input: &[u8],
    p: usize,
    out: &mut Vec<u8>,
) -> Result<usize, ScanError> {
    let mut run = p;
    let mut q = p;
    loop {
        let (stop, is_escape) = find_plain(input, q)?;
        if !is_escape {
            append(out, input, run, stop);
            return Ok(stop + 1);
        }
        if is_canonical_escape(input.get(stop + 1)) {
            q = stop + 2;
            continue;
        }
        append(out, input, run, stop);
        q = match (input.get(stop + 1), hex4(input, stop + 2)) {
            // The common non-canonical escape (`\u` of a BMP character that is not a
            // surrogate half), written directly; everything else takes the general path.
            (Some(b'u'), Some(c)) if !(0xD800..0xE000).contains(&c) => {
                canon_bmp(out, c);
                stop + 6
            }
            _ => escape(input, stop, &mut Canonical(out))?,
        };
        run = q;
    }
}

/// Appends `input[from..to]`. Runs between escapes are mostly short, and a slice copy
/// of unknown length is a `memcpy` call: a run of up to 16 bytes is copied as a fixed
/// 16-byte block (read from the input, which usually has that many bytes left) and the
/// excess cut off again.
#[inline]
fn append(out: &mut Vec<u8>, input: &[u8], from: usize, to: usize) {
    let len = to - from;
    if len <= 16
        && let Some(Ok(block)) = input.get(from..from + 16).map(<&[u8; 16]>::try_from)
    {
        let keep = out.len() + len;
        out.extend_from_slice(block);
        out.truncate(keep);
    } else {
        out.extend_from_slice(&input[from..to]);
    }
}

/// Appends the canonical form of `c` (< U+10000, not a surrogate).
#[inline]
fn canon_bmp(out: &mut Vec<u8>, c: u32) {
    // `as u8` keeps the low bits on purpose: each arm has masked or range-checked `c`.
    match c {
        0x800.. => out.extend_from_slice(&[
            0xE0 | (c >> 12) as u8,
            0x80 | ((c >> 6) & 0x3F) as u8,
            0x80 | (c & 0x3F) as u8,
        ]),
        0x80.. => out.extend_from_slice(&[0xC0 | (c >> 6) as u8, 0x80 | (c & 0x3F) as u8]),
        0x20.. if c != 0x22 && c != 0x5C => out.push(c as u8),
        _ => canon_char(out, c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(input: &[u8], start: usize) -> Option<usize> {
        (start..input.len()).find(|&i| input[i] < 0x20 || input[i] == b'"' || input[i] == b'\\')
    }

    #[test]
    fn find_special_matches_a_byte_loop() {
        // Every byte value at every position of a word and of the tail, after every
        // other byte value (a borrow from a lower byte must not hide or fake a match).
        for len in [1usize, 7, 8, 9, 16, 23, 40] {
            for pos in 0..len {
                for b in 0..=255u8 {
                    for filler in [b'a', 0xFF, 0x80, 0x21, 0x5D, 0x20] {
                        let mut v = vec![filler; len];
                        v[pos] = b;
                        if pos > 0 {
                            v[pos - 1] = b.wrapping_add(1);
                        }
                        for start in [0, pos] {
                            assert_eq!(find_special(&v, start), naive(&v, start), "{v:?} {start}");
                        }
                    }
                }
            }
        }
        assert_eq!(find_special(b"abc", 3), None);
        assert_eq!(find_special(b"abc", 9), None);
    }

    #[test]
    fn verbatim_stops_at_the_first_non_canonical_escape() {
        let s = br#""a\n\"\\\b\f\r\tz""#;
        assert!(matches!(
            verbatim(s, 1),
            Ok(Verbatim::Whole { end, escaped: true }) if end == s.len() - 1
        ));
        assert!(matches!(
            verbatim(br#""plain""#, 1),
            Ok(Verbatim::Whole {
                end: 6,
                escaped: false
            })
        ));
        for (s, from) in [
            (&br#""ab\/""#[..], 3),
            (br#""a\n\u00e9""#, 4),
            (br#""\u0001""#, 1),
        ] {
            assert!(matches!(verbatim(s, 1), Ok(Verbatim::Until { from: f }) if f == from));
        }
    }

    #[test]
    fn canonical_tail_decodes_only_non_canonical_escapes() {
        let s = br#""x\n\/\u00E9\"\u0001\u0008\ud83d\ude00y" "#;
        let mut out = Vec::new();
        let end = canonical_tail(s, 1, &mut out).map_err(|e| e.message);
        assert_eq!(end, Ok(s.len() - 1));
        assert_eq!(out, "x\\n/\u{e9}\\\"\\u0001\\b\u{1f600}y".as_bytes());
    }

    #[test]
    fn canonical_tail_writes_bmp_escapes_in_every_utf8_length() {
        let s = br#""\u0041\u0022\u005C\u007f\u0080\u07FF\u0800\uffff\u001F""#;
        let mut out = Vec::new();
        let end = canonical_tail(s, 1, &mut out).map_err(|e| e.message);
        assert_eq!(end, Ok(s.len()));
        assert_eq!(
            out,
            "A\\\"\\\\\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\\u001f".as_bytes()
        );
    }
}
