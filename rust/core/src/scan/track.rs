//! What the scan records about the lookup value while it is canonicalised, in the same
//! pass: for each element, where it ended up, and for a turn or text part (an object),
//! its `role`, `content`, `type` and `text` members. [`ChatTrack`] is the
//! [`Track`] hook that holds this chat knowledge; the parser knows none of it.
use super::TEXT_TYPES;
use crate::canonical::{Element, Kind, Str, Track, ValPos};
use crate::json;

/// Member tags (0 is "not tracked").
const ROLE: u8 = 1;
const CONTENT: u8 = 2;
const TYPE: u8 = 3;
const TEXT: u8 = 4;

/// What the extraction needs from a tracked element that is an object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ObjMeta {
    pub has_role: bool,
    pub role_is_user: bool,
    pub content: Option<ValPos>,
    pub type_is_text: bool,
    pub text: Option<ValPos>,
}

/// One element of a tracked array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Elem {
    pub kind: Kind,
    /// Segments of the element; exact (own segments) for strings only.
    pub lo: usize,
    pub hi: usize,
    pub span: (usize, usize),
    pub obj: ObjMeta,
}

/// Collects the elements of the lookup value (or of the last user turn's content).
#[derive(Default)]
pub(super) struct ChatTrack {
    pub elems: Vec<Elem>,
    /// Members seen so far of the element object being closed.
    cur: ObjMeta,
    /// Decoded text of an escaped `role` or `type` value.
    tmp: Vec<u8>,
}

impl ChatTrack {
    /// Whether the string value at `at` decodes to one of `wanted`.
    fn text_is(&mut self, input: &[u8], at: ValPos, wanted: &[&[u8]]) -> bool {
        let (start, end) = at.span;
        let text: &[u8] = if at.string == Str::Escaped {
            self.tmp.clear();
            if json::string_tail(input, start + 1, &mut json::Decode(&mut self.tmp)).is_err() {
                self.tmp.clear();
            }
            &self.tmp
        } else {
            &input[start + 1..end - 1]
        };
        wanted.contains(&text)
    }
}

impl Track for ChatTrack {
    const ON: bool = true;

    #[inline]
    fn tag(&mut self, key: &[u8]) -> u8 {
        match key {
            b"role" => ROLE,
            b"content" => CONTENT,
            b"type" => TYPE,
            b"text" => TEXT,
            _ => 0,
        }
    }

    fn member(&mut self, input: &[u8], tag: u8, at: ValPos) {
        match tag {
            ROLE => {
                self.cur.has_role = true;
                self.cur.role_is_user = at.is_string() && self.text_is(input, at, &[b"user"]);
            }
            CONTENT => self.cur.content = Some(at),
            TYPE => {
                self.cur.type_is_text = at.is_string() && self.text_is(input, at, &TEXT_TYPES);
            }
            TEXT => self.cur.text = Some(at),
            _ => {}
        }
    }

    #[inline]
    fn element(&mut self, e: Element) {
        // An object's members were reported just before it finished; any other element
        // has none.
        let obj = std::mem::take(&mut self.cur);
        self.elems.push(Elem {
            kind: e.kind,
            lo: e.lo,
            hi: e.hi,
            span: e.span,
            obj,
        });
    }
}
