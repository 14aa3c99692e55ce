//! Readers over input that an earlier pass already validated: the lazy `turns` and
//! the text extraction walk it again by offsets, without checks or canonical output.
use memchr::memchr2;

use super::skip_ws;
use super::string::{Decode, string_tail};

/// Offset just after the string whose opening quote is at `p`.
fn skip_string(input: &[u8], p: usize) -> usize {
    let mut q = p + 1;
    loop {
        match memchr2(b'"', b'\\', input.get(q..).unwrap_or_default()) {
            Some(i) if input[q + i] == b'"' => return q + i + 1,
            Some(i) => q += i + 2,
            None => return input.len(),
        }
    }
}

/// Offset just after the (valid) value starting at `p`.
pub(crate) fn skip_value(input: &[u8], p: usize) -> usize {
    match input.get(p) {
        Some(b'"') => skip_string(input, p),
        Some(b'{' | b'[') => {
            // Bracket counting is enough on valid input; strings are skipped whole so
            // brackets inside them do not count. Iterative: depth is not bounded here.
            let mut depth = 0usize;
            let mut q = p;
            while let Some(&b) = input.get(q) {
                match b {
                    b'"' => {
                        q = skip_string(input, q);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return q + 1;
                        }
                    }
                    _ => {}
                }
                q += 1;
            }
            input.len()
        }
        _ => {
            let mut q = p;
            while input
                .get(q)
                .is_some_and(|b| !matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                q += 1;
            }
            q
        }
    }
}

/// Spans of the elements of the (valid) array at `span`.
pub(crate) fn elements(input: &[u8], span: (usize, usize)) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    if input.get(span.0) != Some(&b'[') {
        return out;
    }
    let mut p = skip_ws(input, span.0 + 1);
    while p < span.1 && input.get(p) != Some(&b']') {
        let end = skip_value(input, p);
        if end <= p {
            // Only on input that was not validated: stop rather than spin.
            break;
        }
        out.push((p, end));
        p = skip_ws(input, end);
        if input.get(p) == Some(&b',') {
            p = skip_ws(input, p + 1);
        }
    }
    out
}

/// Decoded keys and value spans of the members of the (valid) object at `span`.
pub(crate) fn members(input: &[u8], span: (usize, usize)) -> Vec<(Vec<u8>, (usize, usize))> {
    let mut out = Vec::new();
    if input.get(span.0) != Some(&b'{') {
        return out;
    }
    let mut p = skip_ws(input, span.0 + 1);
    while p < span.1 && input.get(p) == Some(&b'"') {
        let mut key = Vec::new();
        let Ok(after) = string_tail(input, p + 1, &mut Decode(&mut key)) else {
            break;
        };
        let vstart = skip_ws(input, skip_ws(input, after) + 1);
        let vend = skip_value(input, vstart);
        out.push((key, (vstart, vend)));
        p = skip_ws(input, vend);
        if input.get(p) == Some(&b',') {
            p = skip_ws(input, p + 1);
        }
    }
    out
}

/// The decoded text of the (valid) string at `span` (opening quote included).
pub(crate) fn decode(input: &[u8], span: (usize, usize)) -> String {
    let mut v = Vec::with_capacity(span.1.saturating_sub(span.0));
    if string_tail(input, span.0 + 1, &mut Decode(&mut v)).is_err() {
        v.clear();
    }
    String::from_utf8(v).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
