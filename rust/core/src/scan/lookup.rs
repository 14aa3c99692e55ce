//! The lookup value with its query text taken out (`extract_field` and
//! `extract_content`), built by copying the segments the parse recorded: no second
//! parse, except of the last user turn's content.
use super::Cand;
use super::track::{ChatTrack, Elem};
use crate::canonical::{Canon, Kind, Seg, ValPos};
use crate::error::ScanError;
use crate::json;

/// A derived value: `null` or a run of segments.
#[derive(Clone, Copy, Debug)]
pub(super) enum Derived {
    Null,
    Segs(usize, usize),
}

/// `extract_field`: the query text, the lookup value with it taken out, and the span of
/// the value when it is a turn list.
#[allow(clippy::type_complexity)]
pub(super) fn derive_lookup(
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
        let mut track = ChatTrack::default();
        let kind = c.value(3, &mut track)?;
        let thi = c.segs.len();
        let (query, tc) = derive_content(c, kind, (tlo, thi), content.span, &track.elems);
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
                        let Some(t) = e.obj.text.filter(ValPos::is_string) else {
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
