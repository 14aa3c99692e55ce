//! Canonical JSON, written in one pass without building a tree.
//!
//! Output is kept as a list of segments ([`Seg`]): each is a run of bytes either in the
//! input (a string with no escapes is its own canonical form, quotes included, so long
//! strings are never copied) or in an append-only buffer (punctuation, keys, numbers,
//! re-escaped strings). Sorting an object's keys then moves segment descriptors, not
//! bytes, so a long string is copied once at most (when the result is flattened), however
//! deep it sits.
//!
//! * `buffers`: the output buffers and segments, kept per thread between scans;
//! * `parse`: the iterative parser (an explicit frame stack, so the nesting limit is a
//!   number, not the thread's stack size);
//! * `sort`: key order and duplicate keys;
//! * `track`: the hook through which a caller learns, in the same pass, where the
//!   elements of one array (and some members of its objects) ended up.
use crate::error::{Limits, ScanError, ScanErrorKind};
use crate::json;

mod buffers;
mod parse;
mod sort;
mod track;

use parse::Frame;
pub(crate) use track::{Element, NoTrack, Track};

/// A run of canonical output bytes: `src[start..end]` where `src` is the input or the
/// buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seg {
    pub start: usize,
    pub end: usize,
    pub input: bool,
}

/// Shape of a finished value, as far as the scan cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    Other,
}

/// Whether a value is a string, and whether that string holds escapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Str {
    #[default]
    No,
    Plain,
    Escaped,
}

/// Where a member value ended up after the object's keys were sorted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ValPos {
    /// Segments of the value alone (the key segment is at `lo - 1`).
    pub lo: usize,
    pub hi: usize,
    /// Input span of the value.
    pub span: (usize, usize),
    pub string: Str,
    /// First member in sorted order (its key segment carries no comma).
    pub first: bool,
    /// Last member in sorted order (the next segment is not a member's key).
    pub last: bool,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Member {
    key_start: usize,
    key_end: usize,
    key_in_input: bool,
    /// Offset of the key's opening quote.
    pub offset: usize,
    /// Segments `[lo, hi)`: the key segment (`,"key":`) then the value's segments.
    pub lo: usize,
    pub hi: usize,
    /// What the [`Track`] hook called this member (0: nothing; tracked objects only).
    tag: u8,
    /// Value facts, filled for tagged members only.
    vspan: (usize, usize),
    vstring: bool,
    vescaped: bool,
}

/// The segment-writing canonicalizer. One instance serves a whole scan.
pub(crate) struct Canon<'a> {
    pub input: &'a [u8],
    pub pos: usize,
    pub buf: Vec<u8>,
    pub segs: Vec<Seg>,
    /// The next buffer write must start a new segment.
    brk: bool,
    members: Vec<Member>,
    keys: Vec<u8>,
    scratch: Vec<Seg>,
    frames: Vec<Frame>,
    max_depth: usize,
    /// The flattened output that the scan hashes (kept between scans, see `buffers`).
    pub hash_buf: Vec<u8>,
    /// A segment holding `null`.
    pub null_seg: Seg,
}

impl ValPos {
    pub fn is_string(&self) -> bool {
        self.string != Str::No
    }
}

impl Canon<'_> {
    /// Writes `segs[range]` in order into `out`.
    pub fn flatten(&self, segs: &[Seg], out: &mut Vec<u8>) {
        for s in segs {
            let src = if s.input { self.input } else { &self.buf };
            out.extend_from_slice(&src[s.start..s.end]);
        }
    }

    /// Total byte length of `segs`.
    pub fn seg_len(segs: &[Seg]) -> usize {
        segs.iter().map(|s| s.end - s.start).sum()
    }
}

/// Checks the size bound, then that the whole input is UTF-8.
pub(crate) fn precheck(input: &[u8], limits: Limits) -> Result<(), ScanError> {
    if input.len() > limits.max_bytes {
        return Err(ScanError {
            kind: ScanErrorKind::TooLarge,
            offset: limits.max_bytes,
            message: format!(
                "body of {} bytes is over the limit of {} bytes",
                input.len(),
                limits.max_bytes
            ),
        });
    }
    if let Err(e) = simdutf8::compat::from_utf8(input) {
        return Err(ScanError::new(
            ScanErrorKind::InvalidUtf8,
            e.valid_up_to(),
            "invalid UTF-8",
        ));
    }
    Ok(())
}

/// Parses a whole document (any top-level value) into canonical segments; the caller
/// flattens them.
pub(crate) fn parse_document(input: &[u8], limits: Limits) -> Result<Canon<'_>, ScanError> {
    precheck(input, limits)?;
    let mut c = Canon::new(input, limits.max_depth);
    c.value(0, &mut NoTrack)?;
    c.pos = json::skip_ws(input, c.pos);
    if c.pos != input.len() {
        return Err(ScanError::json(
            c.pos,
            "trailing characters after the document",
        ));
    }
    Ok(c)
}

/// The canonical form of any JSON document: keys sorted by code point, minimal string
/// escapes, numbers as `0` or `[-]<digits>e<exponent>`, no white space.
pub fn canonical_json(input: &[u8], limits: Limits) -> Result<Vec<u8>, ScanError> {
    let c = parse_document(input, limits)?;
    let mut out = Vec::with_capacity(Canon::seg_len(&c.segs));
    c.flatten(&c.segs, &mut out);
    Ok(out)
}
