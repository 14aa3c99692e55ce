//! The parser: one value at a time, iteratively (an explicit frame stack), writing
//! canonical segments as it goes and reporting tracked elements to a [`Track`] hook.
use super::{Canon, Element, Kind, Member, Seg, Track};
use crate::error::{ScanError, ScanErrorKind};
use crate::json::{self, Decode};

#[derive(Clone, Copy, Debug)]
pub(super) enum Frame {
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

impl Canon<'_> {
    #[inline]
    fn byte(&self) -> Result<u8, ScanError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| ScanError::json(self.input.len(), "unexpected end of input"))
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
            tag: 0,
            vspan: (0, 0),
            vstring: false,
            vescaped: false,
        })
    }

    /// Writes the string at `self.pos` (a quote); returns whether it had escapes.
    // Inlined into both instances of `value` (tracked or not): as a call per string it
    // lost the optimisations it gets inside the parse loop.
    #[allow(
        clippy::inline_always,
        reason = "the string loop of every value; see above"
    )]
    #[inline(always)]
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
    /// enclosing containers, appending its canonical segments. When the value is an
    /// array and `T::ON`, its elements are reported to `track`.
    #[allow(
        clippy::too_many_lines,
        reason = "one state machine: split, its state would move to fields on the hot path"
    )]
    pub fn value<T: Track>(&mut self, base: usize, track: &mut T) -> Result<Kind, ScanError> {
        self.frames.clear();
        // The value's segments must not merge into whatever was written before it: its
        // range is used on its own.
        self.brk = true;
        loop {
            // --- one value starts here ---
            self.pos = json::skip_ws(self.input, self.pos);
            let start = self.pos;
            let in_tracked =
                T::ON && matches!(self.frames.last(), Some(Frame::Arr { tracked: true, .. }));
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
                        self.push_member(m, in_tracked, track);
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
                            tracked: T::ON && self.frames.is_empty(),
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
                self.finish(done, track);
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
                        self.push_member(m, tracked, track);
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
                        self.close_object(members_lo, region_lo, tracked, track)?;
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

    fn push_member<T: Track>(&mut self, mut m: Member, tracked: bool, track: &mut T) {
        if T::ON && tracked {
            m.tag = track.tag(self.key_of(&m));
        }
        self.members.push(m);
    }

    /// Records a finished value in its parent (member end, tracked element facts).
    #[inline]
    fn finish<T: Track>(&mut self, done: Done, track: &mut T) {
        match self.frames.last() {
            Some(Frame::Obj { tracked, .. }) => {
                let tracked = T::ON && *tracked;
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
                    if m.tag != 0 {
                        m.vspan = (done.start, end);
                        m.vstring = done.kind == Kind::String;
                        m.vescaped = done.escaped;
                    }
                }
            }
            Some(Frame::Arr { tracked: true, .. }) if T::ON => {
                if done.kind == Kind::String {
                    self.brk = true;
                }
                track.element(Element {
                    kind: done.kind,
                    lo: done.elem_lo,
                    hi: self.segs.len(),
                    span: (done.start, self.pos),
                });
            }
            _ => {}
        }
    }
}
