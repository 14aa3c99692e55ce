//! The request-body scan: what the cache key needs from a JSON body, in one pass.
//!
//! The rules (they define the cache key; docs/native.md says the same in prose):
//!
//! * The top level must be an object.
//! * `model` is extracted when it is a string, `stream` when it is a boolean; otherwise
//!   each is an ordinary parameter.
//! * `system` (any value) is part of the context, never a parameter.
//! * The lookup field is the first present of `query`, `prompt`, `input`, `messages`, in
//!   that priority order whatever the document order; the others are parameters.
//! * Every other top-level member is a parameter.
//! * `params_digest` = BLAKE3 of the canonical object of parameters; `context_digest` =
//!   BLAKE3 of the canonical array `[lookup field name, system, lookup value with its
//!   query text taken out]` (`null` for what is absent).
//!
//! Submodules: `track` (the `Track` hook that records the
//! turns and text parts of the lookup value during the one pass), `lookup` (the lookup
//! value with its text taken out, from the recorded segments) and `turns` (the lazy
//! role-tagged conversation, re-read from the body on request).
use crate::canonical::{self, Canon, Kind, Member, NoTrack};
use crate::error::{Limits, ScanError, ScanErrorKind};
use crate::json;

mod lookup;
mod track;
mod turns;

use lookup::{Derived, derive_lookup};
use track::{ChatTrack, Elem};

/// Lookup fields in priority order.
pub const LOOKUP_FIELDS: [&str; 4] = ["query", "prompt", "input", "messages"];

/// Text-part `type` values.
const TEXT_TYPES: [&[u8]; 3] = [b"text", b"input_text", b"output_text"];

/// What the cache needs from one request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// The lookup text (latest user turn, or the `query` / `prompt` / `input` text).
    pub query: Option<String>,
    /// Which lookup field was present (and won).
    pub query_field: Option<&'static str>,
    /// Top-level `model` when a string.
    pub model: Option<String>,
    /// Top-level `stream` when a boolean.
    pub stream: Option<bool>,
    /// BLAKE3 of the canonical object of ordinary parameters.
    pub params_digest: [u8; 32],
    /// BLAKE3 of the canonical `[field, system, transformed lookup value]`.
    pub context_digest: [u8; 32],
    turns_src: TurnSource,
}

/// Input spans the lazy `turns` re-reads (the scan keeps offsets, not text).
#[derive(Clone, Debug, PartialEq, Eq)]
struct TurnSource {
    system: Option<(usize, usize)>,
    turn_list: Option<(usize, usize)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Param,
    Model,
    Stream,
    System,
    Lookup(usize),
}

#[derive(Clone, Debug)]
struct Cand {
    member: Member,
    kind: Kind,
    span: (usize, usize),
    elems: Vec<Elem>,
}

/// Scans a JSON request body (see the module docs for the rules).
pub fn scan_request(input: &[u8], limits: Limits) -> Result<ScanResult, ScanError> {
    canonical::precheck(input, limits)?;
    let start = json::skip_ws(input, 0);
    if input.get(start) != Some(&b'{') {
        // Valid JSON of another type is `not_object`; anything else keeps its own error.
        canonical::parse_document(input, limits)?;
        return Err(ScanError::new(
            ScanErrorKind::NotObject,
            start,
            "top-level value is not an object",
        ));
    }
    if limits.max_depth < 1 {
        return Err(ScanError::new(
            ScanErrorKind::TooDeep,
            start,
            "nesting deeper than the limit",
        ));
    }
    let mut c = Canon::new(input, limits.max_depth);
    c.pos = json::skip_ws(input, start + 1);

    let Top {
        tops,
        model,
        stream,
        system,
        mut cands,
    } = read_members(&mut c)?;
    c.pos = json::skip_ws(input, c.pos);
    if c.pos != input.len() {
        return Err(ScanError::json(
            c.pos,
            "trailing characters after the document",
        ));
    }
    let mut all: Vec<Member> = tops.iter().map(|t| t.0).collect();
    if let Some(err) = c.duplicate_in(&mut all) {
        return Err(err);
    }

    let winner = cands.iter().position(Option::is_some);
    let mut params: Vec<Member> = tops
        .iter()
        .filter(|(_, r)| match r {
            Role::Param => true,
            Role::Lookup(i) => Some(*i) != winner,
            _ => false,
        })
        .map(|t| t.0)
        .collect();
    params.sort_unstable_by(|a, b| c.key_of(a).cmp(c.key_of(b)));

    let (query, lookup_t, turn_list) = match winner.and_then(|i| cands[i].take()) {
        Some(cand) => derive_lookup(&mut c, &cand)?,
        None => (None, Derived::Null, None),
    };

    let (params_digest, context_digest) =
        digests(&mut c, &params, winner, system.as_ref(), lookup_t);

    Ok(ScanResult {
        query,
        query_field: winner.map(|i| LOOKUP_FIELDS[i]),
        model,
        stream,
        params_digest,
        context_digest,
        turns_src: TurnSource {
            system: system.map(|s| s.1),
            turn_list,
        },
    })
}

/// The top-level members, sorted out by what the scan does with them.
struct Top {
    tops: Vec<(Member, Role)>,
    model: Option<String>,
    stream: Option<bool>,
    system: Option<(Member, (usize, usize))>,
    cands: [Option<Cand>; 4],
}

/// Reads the members of the top-level object (after its `{`) up to its `}`.
fn read_members(c: &mut Canon<'_>) -> Result<Top, ScanError> {
    let input = c.input;
    let mut tops: Vec<(Member, Role)> = Vec::new();
    let mut model = None;
    let mut stream = None;
    let mut system: Option<(Member, (usize, usize))> = None;
    let mut cands: [Option<Cand>; 4] = [None, None, None, None];

    if input.get(c.pos) == Some(&b'}') {
        c.pos += 1;
    } else {
        loop {
            let mut m = c.key()?;
            c.pos = json::skip_ws(input, c.pos);
            let vstart = c.pos;
            let next = input.get(vstart).copied();
            let role = match (c.key_of(&m), next) {
                (b"model", Some(b'"')) => Role::Model,
                (b"stream", Some(b't' | b'f')) => Role::Stream,
                (b"system", _) => Role::System,
                (key, _) => LOOKUP_FIELDS
                    .iter()
                    .position(|f| f.as_bytes() == key)
                    .map_or(Role::Param, Role::Lookup),
            };
            match role {
                Role::Model => {
                    let (stop, escaped) = json::find_plain(input, vstart + 1)?;
                    let text = if escaped {
                        let mut v = Vec::new();
                        c.pos = json::string_tail(input, vstart + 1, &mut json::Decode(&mut v))?;
                        v
                    } else {
                        c.pos = stop + 1;
                        input[vstart + 1..stop].to_vec()
                    };
                    model = Some(String::from_utf8_lossy(&text).into_owned());
                }
                Role::Stream => {
                    let flag = next == Some(b't');
                    let word: &[u8] = if flag { b"true" } else { b"false" };
                    c.pos = json::literal(input, vstart, word)?;
                    stream = Some(flag);
                }
                Role::System => {
                    c.value(1, &mut NoTrack)?;
                    m.hi = c.segs.len();
                    system = Some((m, (vstart, c.pos)));
                }
                Role::Lookup(i) => {
                    let mut track = ChatTrack::default();
                    let kind = c.value(1, &mut track)?;
                    m.hi = c.segs.len();
                    cands[i] = Some(Cand {
                        member: m,
                        kind,
                        span: (vstart, c.pos),
                        elems: track.elems,
                    });
                }
                Role::Param => {
                    c.value(1, &mut NoTrack)?;
                    m.hi = c.segs.len();
                }
            }
            tops.push((m, role));
            c.pos = json::skip_ws(input, c.pos);
            match input.get(c.pos) {
                Some(b',') => c.pos = json::skip_ws(input, c.pos + 1),
                Some(b'}') => {
                    c.pos += 1;
                    break;
                }
                None => return Err(ScanError::json(c.pos, "unexpected end of input")),
                Some(_) => return Err(ScanError::json(c.pos, "expected ',' or '}'")),
            }
        }
    }
    Ok(Top {
        tops,
        model,
        stream,
        system,
        cands,
    })
}

/// BLAKE3 of the canonical parameters object and of the canonical context array.
fn digests(
    c: &mut Canon<'_>,
    params: &[Member],
    winner: Option<usize>,
    system: Option<&(Member, (usize, usize))>,
    lookup_t: Derived,
) -> ([u8; 32], [u8; 32]) {
    // One flat buffer and one-shot hashes: BLAKE3 runs widest over a whole message (a
    // streaming hasher fed in pieces did more work). The buffer is kept per thread.
    let mut out = std::mem::take(&mut c.hash_buf);
    out.reserve(Canon::seg_len(&c.segs).min(c.input.len() * 2) + 64);
    out.push(b'{');
    for (i, m) in params.iter().enumerate() {
        let mut key_seg = c.segs[m.lo];
        if i == 0 {
            key_seg.start += 1;
        }
        c.flatten(&[key_seg], &mut out);
        c.flatten(&c.segs[m.lo + 1..m.hi], &mut out);
    }
    out.push(b'}');
    let params_digest = *blake3::hash(&out).as_bytes();

    out.clear();
    out.push(b'[');
    match winner {
        Some(i) => {
            out.push(b'"');
            out.extend_from_slice(LOOKUP_FIELDS[i].as_bytes());
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
    match system {
        Some((m, _)) => c.flatten(&c.segs[m.lo + 1..m.hi], &mut out),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
    match lookup_t {
        Derived::Segs(lo, hi) => c.flatten(&c.segs[lo..hi], &mut out),
        Derived::Null => out.extend_from_slice(b"null"),
    }
    out.push(b']');
    let context_digest = *blake3::hash(&out).as_bytes();
    c.hash_buf = out;
    (params_digest, context_digest)
}
