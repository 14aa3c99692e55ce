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
use crate::canonical::{self, Canon, Elem, Kind, Member, Seg};
use crate::error::{Limits, ScanError, ScanErrorKind};
use crate::json;

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

/// A derived value: `null` or a run of segments.
#[derive(Clone, Copy, Debug)]
enum Derived {
    Null,
    Segs(usize, usize),
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
                    c.value(1, false)?;
                    m.hi = c.segs.len();
                    system = Some((m, (vstart, c.pos)));
                }
                Role::Lookup(i) => {
                    let kind = c.value(1, true)?;
                    m.hi = c.segs.len();
                    cands[i] = Some(Cand {
                        member: m,
                        kind,
                        span: (vstart, c.pos),
                        elems: std::mem::take(&mut c.elems),
                    });
                }
                Role::Param => {
                    c.value(1, false)?;
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

/// `extract_field`: the query text, the lookup value with it taken out, and the span of
/// the value when it is a turn list.
#[allow(clippy::type_complexity)]
fn derive_lookup(
    c: &mut Canon<'_>,
    cand: &Cand,
) -> Result<(Option<String>, Derived, Option<(usize, usize)>), ScanError> {
    let (lo, hi) = (cand.member.lo + 1, cand.member.hi);
    if cand.kind == Kind::Array
        && let Some(last) = cand.elems.last()
        && last.kind == Kind::Object
        && last.obj.has_role
    {
        let turn_list = Some(cand.span);
        let (true, Some(content)) = (last.obj.role_is_user, last.obj.content) else {
            return Ok((None, Derived::Segs(lo, hi), turn_list));
        };
        // The last user turn is usually short: parse its content again, tracked, rather
        // than tracking the content of every turn on the first pass.
        c.pos = content.span.0;
        let tlo = c.segs.len();
        let kind = c.value(3, true)?;
        let thi = c.segs.len();
        let elems = std::mem::take(&mut c.elems);
        let (query, tc) = derive_content(c, kind, (tlo, thi), content.span, &elems);
        let out_lo = c.segs.len();
        c.segs.extend_from_within(lo..content.lo);
        push_derived(c, tc);
        c.segs.extend_from_within(content.hi..hi);
        return Ok((query, Derived::Segs(out_lo, c.segs.len()), turn_list));
    }
    let (query, t) = derive_content(c, cand.kind, (lo, hi), cand.span, &cand.elems);
    Ok((query, t, None))
}

fn push_derived(c: &mut Canon<'_>, d: Derived) {
    match d {
        Derived::Null => {
            let null = c.null_seg;
            c.segs.push(null);
        }
        Derived::Segs(lo, hi) => c.segs.extend_from_within(lo..hi),
    }
}

/// `extract_content`: text parts joined with `\n`, and the value with them taken out
/// (string elements become `null`, text parts lose their `text` member).
fn derive_content(
    c: &mut Canon<'_>,
    kind: Kind,
    (lo, hi): (usize, usize),
    span: (usize, usize),
    elems: &[Elem],
) -> (Option<String>, Derived) {
    match kind {
        Kind::String => (Some(json::decode(c.input, span)), Derived::Null),
        Kind::Array => {
            let mut query: Option<String> = None;
            let mut add = |text: String| match &mut query {
                Some(q) => {
                    q.push('\n');
                    q.push_str(&text);
                }
                None => query = Some(text),
            };
            let out_lo = c.segs.len();
            let mut cur = lo;
            for e in elems {
                match e.kind {
                    Kind::String => {
                        add(json::decode(c.input, e.span));
                        c.segs.extend_from_within(cur..e.lo);
                        let null = c.null_seg;
                        c.segs.push(null);
                        cur = e.hi;
                    }
                    Kind::Object if e.obj.type_is_text => {
                        let Some(t) = e.obj.text.filter(|t| t.kind_is_string) else {
                            continue;
                        };
                        add(json::decode(c.input, t.span));
                        c.segs.extend_from_within(cur..t.lo - 1);
                        if t.first && !t.last {
                            // The member after `text` becomes the first: drop its comma.
                            let mut next: Seg = c.segs[t.hi];
                            next.start += 1;
                            c.segs.push(next);
                            cur = t.hi + 1;
                        } else {
                            cur = t.hi;
                        }
                    }
                    _ => {}
                }
            }
            c.segs.extend_from_within(cur..hi);
            (query, Derived::Segs(out_lo, c.segs.len()))
        }
        _ => (None, Derived::Segs(lo, hi)),
    }
}

/// The text of `extract_content` on the (valid) value at `span`.
fn content_text(input: &[u8], span: (usize, usize)) -> Option<String> {
    match input.get(span.0) {
        Some(b'"') => Some(json::decode(input, span)),
        Some(b'[') => {
            let mut parts: Vec<String> = Vec::new();
            for e in json::elements(input, span) {
                match input.get(e.0) {
                    Some(b'"') => parts.push(json::decode(input, e)),
                    Some(b'{') => {
                        let ms = json::members(input, e);
                        let is_text = ms.iter().any(|(k, v)| {
                            k == b"type"
                                && input.get(v.0) == Some(&b'"')
                                && TEXT_TYPES
                                    .iter()
                                    .any(|t| json::decode(input, *v).as_bytes() == *t)
                        });
                        let text = ms
                            .iter()
                            .find(|(k, v)| k == b"text" && input.get(v.0) == Some(&b'"'));
                        if let (true, Some((_, v))) = (is_text, text) {
                            parts.push(json::decode(input, *v));
                        }
                    }
                    _ => {}
                }
            }
            if parts.is_empty() {
                None
            } else {
                Some(parts.join("\n"))
            }
        }
        _ => None,
    }
}

impl ScanResult {
    /// Role-tagged text of the conversation, oldest first, `system` first when present.
    ///
    /// `body` must be the bytes this result was scanned from (the result keeps offsets
    /// into it, not text); with other bytes the answer is meaningless but still safe.
    pub fn turns(&self, body: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(span) = self.turns_src.system {
            out.push((
                "system".to_owned(),
                content_text(body, span).unwrap_or_default(),
            ));
        }
        if let Some(span) = self.turns_src.turn_list {
            for e in json::elements(body, span) {
                let ms = json::members(body, e);
                let Some((_, role)) = ms
                    .iter()
                    .find(|(k, v)| k == b"role" && body.get(v.0) == Some(&b'"'))
                else {
                    continue;
                };
                let text = ms
                    .iter()
                    .find(|(k, _)| k == b"content")
                    .and_then(|(_, v)| content_text(body, *v))
                    .unwrap_or_default();
                out.push((json::decode(body, *role), text));
            }
        } else if let Some(q) = &self.query {
            out.push(("user".to_owned(), q.clone()));
        }
        out
    }
}
