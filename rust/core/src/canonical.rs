//! Canonical JSON, written in one pass without building a tree.
//!
//! Output is kept as a list of segments ([`Seg`]): each is a run of bytes either in the
//! input (a string with no escapes is its own canonical form, quotes included, so long
//! strings are never copied) or in an append-only buffer (punctuation, keys, numbers,
//! re-escaped strings). Sorting an object's keys then moves segment descriptors, not
//! bytes, so a long string is copied once at most (when the result is flattened), however
//! deep it sits. The parser is iterative (an explicit frame stack), so the nesting limit
//! is a number, not the thread's stack size.
//!
//! The scan asks for one more thing: for the elements of a "tracked" array (the lookup
//! field), where their strings and some members (`role`, `content`, `type`, `text`)
//! ended up, so that it can derive the lookup value with its text taken out by copying
//! segment descriptors instead of parsing again.
use crate::error::{Limits, ScanError, ScanErrorKind};
use crate::json::{self, Decode};

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

/// Members of a tracked object that the lookup extraction looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cat {
    None,
    Role,
    Content,
    Type,
    Text,
}

/// Where a member value ended up after the object's keys were sorted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ValPos {
    /// Segments of the value alone (the key segment is at `lo - 1`).
    pub lo: usize,
    pub hi: usize,
    /// Input span of the value.
    pub span: (usize, usize),
    pub kind_is_string: bool,
    /// First member in sorted order (its key segment carries no comma).
    pub first: bool,
    /// Last member in sorted order (the next segment is not a member's key).
    pub last: bool,
}

/// What the extraction needs from a tracked element that is an object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ObjMeta {
    pub has_role: bool,
    pub role_is_user: bool,
    pub content: Option<ValPos>,
    pub type_is_text: bool,
    pub text: Option<ValPos>,
}

/// One element of a tracked array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Elem {
    pub kind: Kind,
    /// Segments of the element; exact (own segments) for strings only.
    pub lo: usize,
    pub hi: usize,
    pub span: (usize, usize),
    pub obj: ObjMeta,
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
    cat: Cat,
    /// Value facts, filled for tracked objects only.
    vspan: (usize, usize),
    vstring: bool,
    vmatch: bool,
}

#[derive(Clone, Copy, Debug)]
enum Frame {
    Obj {
        members_lo: usize,
        region_lo: usize,
        tracked: bool,
        start: usize,
        elem_lo: usize,
    },
    Arr {
        tracked: bool,
        start: usize,
        elem_lo: usize,
    },
}

/// A value that just finished, reported to its parent.
#[derive(Clone, Copy, Debug)]
struct Done {
    kind: Kind,
    start: usize,
    elem_lo: usize,
    escaped: bool,
}

/// Strings up to this long are copied into the buffer (fewer, larger segments); longer
/// ones are referenced in the input.
const SHORT_STRING: usize = 48;

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
    /// Elements of the tracked array parsed last (taken by the caller).
    pub elems: Vec<Elem>,
    last_obj: ObjMeta,
    tmp: Vec<u8>,
    /// The flattened output that the scan hashes (kept between scans, see [`Spare`]).
    pub hash_buf: Vec<u8>,
    /// A segment holding `null`.
    pub null_seg: Seg,
}

/// The growable buffers of a [`Canon`], kept per thread between scans.
///
/// A 1 MB body touches a few MB of buffers. Allocated fresh on every call they come
/// from `mmap` (or a heap top the allocator trims on free) and every page faults in
/// again: in a Python process that was about half the scan's time. Kept here, a thread
/// that scans again reuses pages that are already mapped.
#[derive(Default)]
struct Spare {
    buf: Vec<u8>,
    segs: Vec<Seg>,
    members: Vec<Member>,
    keys: Vec<u8>,
    scratch: Vec<Seg>,
    frames: Vec<Frame>,
    tmp: Vec<u8>,
    hash_buf: Vec<u8>,
}

/// Buffers larger than this many bytes are freed rather than kept for the next scan, so
/// that one huge body does not pin its memory to the thread for good.
const KEEP_BYTES: usize = 8 << 20;

thread_local! {
    static SPARE: std::cell::Cell<Spare> = std::cell::Cell::default();
}

/// `v`, emptied, if its allocation is small enough to keep; else a new empty vector.
fn keep<T>(mut v: Vec<T>) -> Vec<T> {
    if v.capacity() * std::mem::size_of::<T>() > KEEP_BYTES {
        return Vec::new();
    }
    v.clear();
    v
}

impl Drop for Canon<'_> {
    fn drop(&mut self) {
        let spare = Spare {
            buf: keep(std::mem::take(&mut self.buf)),
            segs: keep(std::mem::take(&mut self.segs)),
            members: keep(std::mem::take(&mut self.members)),
            keys: keep(std::mem::take(&mut self.keys)),
            scratch: keep(std::mem::take(&mut self.scratch)),
            frames: keep(std::mem::take(&mut self.frames)),
            tmp: keep(std::mem::take(&mut self.tmp)),
            hash_buf: keep(std::mem::take(&mut self.hash_buf)),
        };
        // During thread teardown the slot may be gone: the buffers are then just freed.
        let _ = SPARE.try_with(|slot| slot.set(spare));
    }
}

fn key_bytes<'k>(input: &'k [u8], keys: &'k [u8], m: &Member) -> &'k [u8] {
    if m.key_in_input {
        &input[m.key_start..m.key_end]
    } else {
        &keys[m.key_start..m.key_end]
    }
}

impl<'a> Canon<'a> {
    pub fn new(input: &'a [u8], max_depth: usize) -> Self {
        let Spare {
            mut buf,
            mut segs,
            members,
            keys,
            scratch,
            frames,
            tmp,
            hash_buf,
        } = SPARE.try_with(std::cell::Cell::take).unwrap_or_default();
        // Canonical output is never much larger than the input outside of escapes; the
        // buffer holds short strings and punctuation, so a fraction of it is enough to
        // start with and growth is amortized.
        buf.reserve(input.len() / 2 + 64);
        buf.extend_from_slice(b"null");
        segs.reserve(input.len() / 32 + 16);
        Self {
            input,
            pos: 0,
            buf,
            segs,
            brk: true,
            members,
            keys,
            scratch,
            frames,
            max_depth,
            elems: Vec::new(),
            last_obj: ObjMeta::default(),
            tmp,
            hash_buf,
            null_seg: Seg {
                start: 0,
                end: 4,
                input: false,
            },
        }
    }

    /// Extends the last segment with `buf[start..]` if it is contiguous, else adds one.
    #[inline]
    fn seal(&mut self, start: usize) {
        let end = self.buf.len();
        if !self.brk
            && let Some(last) = self.segs.last_mut()
            && !last.input
            && last.end == start
        {
            last.end = end;
            return;
        }
        self.brk = false;
        self.segs.push(Seg {
            start,
            end,
            input: false,
        });
    }

    #[inline]
    fn push_buf(&mut self, bytes: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.seal(start);
    }

    #[inline]
    fn byte(&self) -> Result<u8, ScanError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| ScanError::json(self.input.len(), "unexpected end of input"))
    }

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

    /// Parses an object key at `self.pos` (which must be a quote) and the `:` after it,
    /// writes the key segment `,"key":` and returns the member (with `lo` = that segment).
    pub(crate) fn key(&mut self) -> Result<Member, ScanError> {
        let p = self.pos;
        if self.input.get(p) != Some(&b'"') {
            return Err(match self.input.get(p) {
                None => ScanError::json(p, "unexpected end of input"),
                Some(_) => ScanError::json(p, "expected a string key"),
            });
        }
        let (stop, escaped) = json::find_plain(self.input, p + 1)?;
        let bstart = self.buf.len();
        self.buf.extend_from_slice(b",\"");
        let (key_start, key_end, key_in_input);
        if escaped {
            key_start = self.keys.len();
            self.pos = json::string_tail(self.input, p + 1, &mut Decode(&mut self.keys))?;
            key_end = self.keys.len();
            key_in_input = false;
            json::canon_decoded(&mut self.buf, &self.keys[key_start..key_end]);
        } else {
            (key_start, key_end, key_in_input) = (p + 1, stop, true);
            self.buf.extend_from_slice(&self.input[p + 1..stop]);
            self.pos = stop + 1;
        }
        self.buf.extend_from_slice(b"\":");
        self.brk = true;
        let lo = self.segs.len();
        self.seal(bstart);
        self.brk = true;
        self.pos = json::skip_ws(self.input, self.pos);
        match self.input.get(self.pos) {
            Some(b':') => self.pos += 1,
            None => return Err(ScanError::json(self.pos, "unexpected end of input")),
            Some(_) => return Err(ScanError::json(self.pos, "expected ':' after object key")),
        }
        Ok(Member {
            key_start,
            key_end,
            key_in_input,
            offset: p,
            lo,
            hi: lo + 1,
            cat: Cat::None,
            vspan: (0, 0),
            vstring: false,
            vmatch: false,
        })
    }

    /// Decoded bytes of a member's key.
    pub(crate) fn key_of(&self, m: &Member) -> &[u8] {
        key_bytes(self.input, &self.keys, m)
    }

    /// Of the keys that occur twice in `ms`, the second occurrence that comes first in
    /// the document (sorts `ms`).
    pub(crate) fn duplicate_in(&self, ms: &mut [Member]) -> Option<ScanError> {
        let (input, keys) = (self.input, &self.keys);
        ms.sort_unstable_by(|a, b| {
            key_bytes(input, keys, a)
                .cmp(key_bytes(input, keys, b))
                .then(a.offset.cmp(&b.offset))
        });
        first_duplicate(input, keys, ms)
            .map(|d| duplicate_key(key_bytes(input, keys, &d), d.offset))
    }

    /// Writes the string at `self.pos` (a quote); returns whether it had escapes.
    fn string_value(&mut self) -> Result<bool, ScanError> {
        let p = self.pos;
        match json::verbatim(self.input, p + 1)? {
            json::Verbatim::Whole { end, escaped } => {
                // Canonical as written (quotes included): reference it or copy it whole.
                self.pos = end + 1;
                if end - p > SHORT_STRING {
                    self.segs.push(Seg {
                        start: p,
                        end: end + 1,
                        input: true,
                    });
                    self.brk = false;
                } else {
                    let bstart = self.buf.len();
                    self.buf.extend_from_slice(&self.input[p..=end]);
                    self.seal(bstart);
                }
                Ok(escaped)
            }
            json::Verbatim::Until { from } => {
                let bstart = self.buf.len();
                self.buf.extend_from_slice(&self.input[p..from]);
                self.pos = json::canonical_tail(self.input, from, &mut self.buf)?;
                self.buf.push(b'"');
                self.seal(bstart);
                Ok(true)
            }
        }
    }

    fn check_depth(&self, base: usize) -> Result<(), ScanError> {
        if base + self.frames.len() + 1 > self.max_depth {
            return Err(ScanError::new(
                ScanErrorKind::TooDeep,
                self.pos,
                "nesting deeper than the limit",
            ));
        }
        Ok(())
    }

    /// Parses one value at `self.pos` (leading white space allowed) inside `base`
    /// enclosing containers, appending its canonical segments. When `track` is set and
    /// the value is an array, its elements are recorded in `self.elems`.
    #[allow(
        clippy::too_many_lines,
        reason = "one state machine: split, its state would move to fields on the hot path"
    )]
    pub fn value(&mut self, base: usize, track: bool) -> Result<Kind, ScanError> {
        self.frames.clear();
        self.elems.clear();
        // The value's segments must not merge into whatever was written before it: its
        // range is used on its own.
        self.brk = true;
        loop {
            // --- one value starts here ---
            self.pos = json::skip_ws(self.input, self.pos);
            let start = self.pos;
            let in_tracked = matches!(self.frames.last(), Some(Frame::Arr { tracked: true, .. }));
            let b = self.byte()?;
            if in_tracked && b == b'"' {
                self.brk = true;
            }
            let elem_lo = self.segs.len();
            let mut done = match b {
                b'{' => {
                    self.check_depth(base)?;
                    self.push_buf(b"{");
                    self.pos = json::skip_ws(self.input, self.pos + 1);
                    if self.input.get(self.pos) == Some(&b'}') {
                        self.pos += 1;
                        self.push_buf(b"}");
                        if in_tracked {
                            self.last_obj = ObjMeta::default();
                        }
                        Done {
                            kind: Kind::Object,
                            start,
                            elem_lo,
                            escaped: false,
                        }
                    } else {
                        self.frames.push(Frame::Obj {
                            members_lo: self.members.len(),
                            region_lo: self.segs.len(),
                            tracked: in_tracked,
                            start,
                            elem_lo,
                        });
                        let m = self.key()?;
                        self.push_member(m, in_tracked);
                        continue;
                    }
                }
                b'[' => {
                    self.check_depth(base)?;
                    self.push_buf(b"[");
                    self.pos = json::skip_ws(self.input, self.pos + 1);
                    if self.input.get(self.pos) == Some(&b']') {
                        self.pos += 1;
                        self.push_buf(b"]");
                        Done {
                            kind: Kind::Array,
                            start,
                            elem_lo,
                            escaped: false,
                        }
                    } else {
                        self.frames.push(Frame::Arr {
                            tracked: track && self.frames.is_empty(),
                            start,
                            elem_lo,
                        });
                        continue;
                    }
                }
                b'"' => {
                    let escaped = self.string_value()?;
                    Done {
                        kind: Kind::String,
                        start,
                        elem_lo,
                        escaped,
                    }
                }
                b't' | b'f' | b'n' => {
                    let word: &[u8] = match b {
                        b't' => b"true",
                        b'f' => b"false",
                        _ => b"null",
                    };
                    self.pos = json::literal(self.input, self.pos, word)?;
                    self.push_buf(word);
                    Done {
                        kind: Kind::Other,
                        start,
                        elem_lo,
                        escaped: false,
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let bstart = self.buf.len();
                    self.pos = json::number(self.input, self.pos, &mut self.buf)?;
                    self.seal(bstart);
                    Done {
                        kind: Kind::Other,
                        start,
                        elem_lo,
                        escaped: false,
                    }
                }
                _ => return Err(ScanError::json(self.pos, "unexpected character")),
            };
            // --- report finished values upward and close containers ---
            loop {
                self.finish(done);
                self.pos = json::skip_ws(self.input, self.pos);
                let Some(frame) = self.frames.last().copied() else {
                    return Ok(done.kind);
                };
                let next = self.input.get(self.pos).copied();
                match (frame, next) {
                    (Frame::Arr { .. }, Some(b',')) => {
                        self.pos += 1;
                        self.push_buf(b",");
                        break;
                    }
                    (Frame::Arr { start, elem_lo, .. }, Some(b']')) => {
                        self.pos += 1;
                        self.frames.pop();
                        self.push_buf(b"]");
                        done = Done {
                            kind: Kind::Array,
                            start,
                            elem_lo,
                            escaped: false,
                        };
                    }
                    (Frame::Obj { tracked, .. }, Some(b',')) => {
                        self.pos = json::skip_ws(self.input, self.pos + 1);
                        let m = self.key()?;
                        self.push_member(m, tracked);
                        break;
                    }
                    (
                        Frame::Obj {
                            members_lo,
                            region_lo,
                            tracked,
                            start,
                            elem_lo,
                        },
                        Some(b'}'),
                    ) => {
                        self.pos += 1;
                        self.frames.pop();
                        self.close_object(members_lo, region_lo, tracked)?;
                        done = Done {
                            kind: Kind::Object,
                            start,
                            elem_lo,
                            escaped: false,
                        };
                    }
                    (_, None) => {
                        return Err(ScanError::json(self.pos, "unexpected end of input"));
                    }
                    (Frame::Arr { .. }, Some(_)) => {
                        return Err(ScanError::json(self.pos, "expected ',' or ']'"));
                    }
                    (Frame::Obj { .. }, Some(_)) => {
                        return Err(ScanError::json(self.pos, "expected ',' or '}'"));
                    }
                }
            }
        }
    }

    fn push_member(&mut self, mut m: Member, tracked: bool) {
        if tracked {
            m.cat = match key_bytes(self.input, &self.keys, &m) {
                b"role" => Cat::Role,
                b"content" => Cat::Content,
                b"type" => Cat::Type,
                b"text" => Cat::Text,
                _ => Cat::None,
            };
        }
        self.members.push(m);
    }

    /// Records a finished value in its parent (member end, tracked element facts).
    #[inline]
    fn finish(&mut self, done: Done) {
        match self.frames.last() {
            Some(Frame::Obj { tracked, .. }) => {
                let tracked = *tracked;
                let hi = self.segs.len();
                let end = self.pos;
                let Some(m) = self.members.last_mut() else {
                    return;
                };
                m.hi = hi;
                if tracked {
                    // Member ranges of tracked objects are cut out later: keep the next
                    // write (`}` or a key) out of this value's last segment.
                    self.brk = true;
                }
                if tracked && m.cat != Cat::None {
                    m.vspan = (done.start, end);
                    m.vstring = done.kind == Kind::String;
                    if m.vstring && matches!(m.cat, Cat::Role | Cat::Type) {
                        let cat = m.cat;
                        let text: &[u8] = if done.escaped {
                            self.tmp.clear();
                            if json::string_tail(
                                self.input,
                                done.start + 1,
                                &mut Decode(&mut self.tmp),
                            )
                            .is_err()
                            {
                                self.tmp.clear();
                            }
                            &self.tmp
                        } else {
                            &self.input[done.start + 1..end - 1]
                        };
                        let vmatch = match cat {
                            Cat::Role => text == b"user",
                            _ => matches!(text, b"text" | b"input_text" | b"output_text"),
                        };
                        if let Some(m) = self.members.last_mut() {
                            m.vmatch = vmatch;
                        }
                    }
                }
            }
            Some(Frame::Arr { tracked: true, .. }) => {
                if done.kind == Kind::String {
                    self.brk = true;
                }
                let obj = if done.kind == Kind::Object {
                    self.last_obj
                } else {
                    ObjMeta::default()
                };
                self.elems.push(Elem {
                    kind: done.kind,
                    lo: done.elem_lo,
                    hi: self.segs.len(),
                    span: (done.start, self.pos),
                    obj,
                });
            }
            _ => {}
        }
    }

    /// Sorts the members of the object being closed, refuses duplicates, writes `}`.
    fn close_object(
        &mut self,
        members_lo: usize,
        region_lo: usize,
        tracked: bool,
    ) -> Result<(), ScanError> {
        let input = self.input;
        let keys = &self.keys;
        let ms = &mut self.members[members_lo..];
        let sorted = ms
            .windows(2)
            .all(|w| key_bytes(input, keys, &w[0]) < key_bytes(input, keys, &w[1]));
        if !sorted {
            ms.sort_unstable_by(|a, b| {
                key_bytes(input, keys, a)
                    .cmp(key_bytes(input, keys, b))
                    .then(a.offset.cmp(&b.offset))
            });
            if let Some(dup) = first_duplicate(input, keys, ms) {
                return Err(duplicate_key(key_bytes(input, keys, &dup), dup.offset));
            }
            self.scratch.clear();
            for m in ms.iter() {
                self.scratch.extend_from_slice(&self.segs[m.lo..m.hi]);
            }
            self.segs.truncate(region_lo);
            self.segs.extend_from_slice(&self.scratch);
        }
        // Every key segment starts with a comma; the first one in sorted order drops it.
        if let Some(first) = self.segs.get_mut(region_lo) {
            first.start += 1;
        }
        if tracked {
            let mut meta = ObjMeta::default();
            let mut pos = region_lo;
            let n = ms.len();
            for (i, m) in ms.iter().enumerate() {
                let lo = pos;
                pos += m.hi - m.lo;
                let vp = ValPos {
                    lo: lo + 1,
                    hi: pos,
                    span: m.vspan,
                    kind_is_string: m.vstring,
                    first: i == 0,
                    last: i + 1 == n,
                };
                match m.cat {
                    Cat::Role => {
                        meta.has_role = true;
                        meta.role_is_user = m.vstring && m.vmatch;
                    }
                    Cat::Content => meta.content = Some(vp),
                    Cat::Type => meta.type_is_text = m.vstring && m.vmatch,
                    Cat::Text => meta.text = Some(vp),
                    Cat::None => {}
                }
            }
            self.last_obj = meta;
        }
        self.members.truncate(members_lo);
        self.push_buf(b"}");
        Ok(())
    }
}

/// In a slice sorted by (key, offset): of the keys that occur twice, the second
/// occurrence that comes first in the document.
fn first_duplicate(input: &[u8], keys: &[u8], ms: &[Member]) -> Option<Member> {
    let mut found: Option<Member> = None;
    for w in ms.windows(2) {
        if key_bytes(input, keys, &w[0]) == key_bytes(input, keys, &w[1])
            && found.is_none_or(|f| w[1].offset < f.offset)
        {
            found = Some(w[1]);
        }
    }
    found
}

pub(crate) fn duplicate_key(key: &[u8], offset: usize) -> ScanError {
    let mut shown = Vec::with_capacity(key.len() + 2);
    json::canon_decoded(&mut shown, key);
    let shown = String::from_utf8_lossy(&shown);
    ScanError {
        kind: ScanErrorKind::DuplicateKey,
        offset,
        message: format!("duplicate key \"{shown}\" at byte {offset}"),
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
    c.value(0, false)?;
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
