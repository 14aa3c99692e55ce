//! Byte-level JSON (RFC 8259, strict) shared by the canonicalizer and the scan.
//!
//! Nothing here builds a tree. `string` and `number` lex the input once, for the
//! canonicalizer; `reread` walks input that an earlier pass already validated.
//! This module holds the small pieces both passes use.
use crate::error::ScanError;

mod number;
mod reread;
mod string;

pub(crate) use number::number;
pub(crate) use reread::{decode, elements, members};
pub(crate) use string::{
    Decode, Verbatim, canon_decoded, canonical_tail, find_plain, string_tail, verbatim,
};

/// Skips JSON white space (space, tab, LF, CR only) from `pos`.
#[inline]
pub(crate) fn skip_ws(input: &[u8], mut pos: usize) -> usize {
    while let Some(&b) = input.get(pos) {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            pos += 1;
        } else {
            break;
        }
    }
    pos
}

/// Matches the literal `word` (`true`, `false`, `null`) at `p`.
#[inline]
pub(crate) fn literal(input: &[u8], p: usize, word: &[u8]) -> Result<usize, ScanError> {
    if input.get(p..p + word.len()) == Some(word) {
        Ok(p + word.len())
    } else {
        Err(ScanError::json(p, "invalid literal"))
    }
}
