//! Incremental Server-Sent Events parser, after the WHATWG HTML "event stream
//! interpretation" rules.
//!
//! Bytes are fed in arbitrary chunks. Lines end in CRLF, LF or CR, and a CR at the end of
//! one chunk followed by an LF at the start of the next is one line end. One leading
//! UTF-8 BOM is stripped. Invalid UTF-8 is replaced by U+FFFD; since every byte the
//! parser looks at (CR, LF, `:`, space, NUL, digits) is ASCII and can never be part of a
//! multi-byte sequence, decoding each value lossily gives the same text as decoding the
//! whole stream first, as the spec does.
//!
//! One deliberate difference from a browser's `EventSource`: `id` and `retry` belong to
//! the event block they appear in (`None` when the block had none) instead of carrying
//! over to later events, so that an event can be stored and sent again as it came.

use memchr::{memchr, memchr2};

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// Event type; `"message"` when the block had no (or an empty) `event` field.
    pub event: String,
    /// `data` lines joined with `\n`.
    pub data: String,
    /// Last `id` field of the block that contained no NUL.
    pub id: Option<String>,
    /// Last `retry` field of the block made of ASCII digits only (and fitting in u64).
    pub retry: Option<u64>,
    /// Byte offset in the stream (BOM included) of the block's first field line.
    pub offset: usize,
}

const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// Incremental parser; feed chunks with [`SseParser::feed`].
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line whose end has not arrived yet.
    line: Vec<u8>,
    /// Stream offset of the first byte in `line`.
    line_start: usize,
    /// The last line ended with CR: an LF that comes next is part of that line end.
    skip_lf: bool,
    /// How many bytes of a leading BOM have matched so far (the check ends at 3 or on a
    /// mismatch, see `bom_done`).
    bom_len: usize,
    bom_done: bool,
    /// Bytes consumed so far.
    pos: usize,
    // The event block being built.
    data: String,
    has_data: bool,
    event: String,
    id: Option<String>,
    retry: Option<u64>,
    block_start: Option<usize>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse one chunk, appending each event it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = chunk;
        if !self.bom_done {
            while self.bom_len < BOM.len() {
                match rest.first() {
                    Some(&b) if b == BOM[self.bom_len] => {
                        self.bom_len += 1;
                        self.pos += 1;
                        rest = &rest[1..];
                    }
                    Some(_) => break,
                    // Out of bytes while the BOM still might be one: wait for more.
                    None => return,
                }
            }
            self.bom_done = true;
            if self.bom_len < BOM.len() {
                // Not a BOM after all: the bytes held back start the first line. They
                // contain no line end, so they simply open the line buffer.
                self.line.extend_from_slice(&BOM[..self.bom_len]);
                self.line_start = 0;
            }
        }
        if rest.is_empty() {
            return;
        }
        if self.skip_lf {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                self.pos += 1;
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            let Some(i) = memchr2(b'\r', b'\n', rest) else {
                if self.line.is_empty() {
                    self.line_start = self.pos;
                }
                self.line.extend_from_slice(rest);
                self.pos += rest.len();
                return;
            };
            let end_len = if rest[i] == b'\n' {
                1
            } else if i + 1 == rest.len() {
                // CR is the last byte: an LF may start the next chunk.
                self.skip_lf = true;
                1
            } else if rest[i + 1] == b'\n' {
                2
            } else {
                1
            };
            if self.line.is_empty() {
                self.process_line(&rest[..i], self.pos, out);
            } else {
                // Reuse the buffer's allocation across lines.
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(&rest[..i]);
                self.process_line(&line, self.line_start, out);
                line.clear();
                self.line = line;
            }
            self.pos += i + end_len;
            rest = &rest[i + end_len..];
        }
    }

    /// True when bytes of an unfinished line, or the data lines of an event that has not
    /// been dispatched, are held: closing the stream now would lose an event.
    pub fn pending(&self) -> bool {
        !self.line.is_empty() || self.has_data || (self.bom_len > 0 && !self.bom_done)
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn process_line(&mut self, line: &[u8], start: usize, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        if self.block_start.is_none() {
            self.block_start = Some(start);
        }
        let (field, value) = match memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => self.event = String::from_utf8_lossy(value).into_owned(),
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Digits only, so the parse fails on overflow alone: such a value is
                // ignored like any other invalid one.
                if let Some(n) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    self.retry = Some(n);
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let offset = self.block_start.take().unwrap_or(self.pos);
        let id = self.id.take();
        let retry = self.retry.take();
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
            id,
            retry,
            offset,
        });
    }
}

/// Parse a whole body; an unterminated last event is dropped, as the spec says.
pub fn parse(body: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    parser.feed(body, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> (String, String, Option<String>, Option<u64>) {
        (event.to_owned(), data.to_owned(), None, None)
    }

    fn simple(events: &[SseEvent]) -> Vec<(String, String, Option<String>, Option<u64>)> {
        events
            .iter()
            .map(|e| (e.event.clone(), e.data.clone(), e.id.clone(), e.retry))
            .collect()
    }

    /// Feed `body` split at every possible single cut and at every byte.
    fn all_splits(body: &[u8]) -> Vec<Vec<SseEvent>> {
        let mut results = vec![parse(body)];
        for cut in 0..=body.len() {
            let mut p = SseParser::new();
            let mut out = Vec::new();
            p.feed(&body[..cut], &mut out);
            p.feed(&body[cut..], &mut out);
            results.push(out);
        }
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for b in body {
            p.feed(std::slice::from_ref(b), &mut out);
        }
        results.push(out);
        results
    }

    fn assert_same_everywhere(body: &[u8]) -> Vec<SseEvent> {
        let results = all_splits(body);
        for r in &results[1..] {
            assert_eq!(r, &results[0], "body {body:?}");
        }
        results[0].clone()
    }

    #[test]
    fn line_endings_lf_crlf_cr() {
        for body in [
            &b"data: a\n\ndata: b\n\n"[..],
            b"data: a\r\n\r\ndata: b\r\n\r\n",
            b"data: a\r\rdata: b\r\r",
            b"data: a\r\n\rdata: b\n\r\n",
        ] {
            let got = assert_same_everywhere(body);
            assert_eq!(simple(&got), vec![ev("message", "a"), ev("message", "b")]);
        }
    }

    #[test]
    fn cr_then_lf_across_chunks_is_one_line_end() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: a\r", &mut out);
        p.feed(b"\ndata: b\r", &mut out);
        // If the LF were a second line end, "a" would be dispatched on its own.
        assert!(out.is_empty());
        p.feed(b"\n\r", &mut out);
        assert_eq!(simple(&out), vec![ev("message", "a\nb")]);
    }

    #[test]
    fn cr_then_cr_across_chunks_is_two_line_ends() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: a\r", &mut out);
        p.feed(b"\r", &mut out);
        assert_eq!(simple(&out), vec![ev("message", "a")]);
    }

    #[test]
    fn comments_are_ignored() {
        let got = assert_same_everywhere(b": hello\ndata: x\n: mid\ndata: y\n\n:\n\n");
        assert_eq!(simple(&got), vec![ev("message", "x\ny")]);
    }

    #[test]
    fn multi_line_data_and_empty_data() {
        let got = assert_same_everywhere(b"data\n\ndata:\ndata:\n\ndata:  two spaces\n\n");
        assert_eq!(
            simple(&got),
            vec![
                ev("message", ""),
                ev("message", "\n"),
                ev("message", " two spaces")
            ]
        );
    }

    #[test]
    fn field_without_space_and_colon_in_value() {
        let got = assert_same_everywhere(b"data:a:b\nevent:x\n\n");
        assert_eq!(simple(&got), vec![ev("x", "a:b")]);
    }

    #[test]
    fn event_type_resets_and_empty_means_message() {
        let got = assert_same_everywhere(b"event: one\ndata: 1\n\ndata: 2\n\nevent:\ndata: 3\n\n");
        assert_eq!(
            simple(&got),
            vec![ev("one", "1"), ev("message", "2"), ev("message", "3")]
        );
    }

    #[test]
    fn block_without_data_is_not_dispatched() {
        let got = assert_same_everywhere(b"event: x\nid: 1\nretry: 5\n\ndata: y\n\n");
        assert_eq!(simple(&got), vec![ev("message", "y")]);
    }

    #[test]
    fn unknown_fields_ignored() {
        let got = assert_same_everywhere(b"foo: bar\ndata: y\nDATA: z\n\n");
        assert_eq!(simple(&got), vec![ev("message", "y")]);
    }

    #[test]
    fn bom_stripped_once() {
        let got = assert_same_everywhere(b"\xEF\xBB\xBFdata: a\n\n");
        assert_eq!(simple(&got), vec![ev("message", "a")]);
        // A second BOM is part of the first line: the field name is then not "data".
        let got = assert_same_everywhere(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n");
        assert_eq!(simple(&got), vec![ev("message", "b")]);
        // A BOM later in the stream is ordinary text.
        let got = assert_same_everywhere(b"data: \xEF\xBB\xBFa\n\n");
        assert_eq!(simple(&got), vec![ev("message", "\u{feff}a")]);
    }

    #[test]
    fn partial_bom_is_data() {
        let got = assert_same_everywhere(b"\xEF\xBBdata: a\n\ndata: b\n\n");
        assert_eq!(simple(&got), vec![ev("message", "b")]);
        let got = assert_same_everywhere(b"\xEF\n\ndata: b\n\n");
        assert_eq!(simple(&got), vec![ev("message", "b")]);
    }

    #[test]
    fn invalid_utf8_replaced() {
        let got = assert_same_everywhere(b"data: a\xFFb\xE2\x82\n\n");
        assert_eq!(simple(&got), vec![ev("message", "a\u{fffd}b\u{fffd}")]);
    }

    #[test]
    fn retry_digits_only() {
        let got = assert_same_everywhere(
            b"retry: 100\ndata: a\n\nretry: 1x\ndata: b\n\nretry:\ndata: c\n\nretry: 99999999999999999999999\ndata: d\n\n",
        );
        let retries: Vec<_> = got.iter().map(|e| e.retry).collect();
        assert_eq!(retries, vec![Some(100), None, None, None]);
    }

    #[test]
    fn id_with_nul_is_ignored() {
        let got = assert_same_everywhere(
            b"id: 1\ndata: a\n\nid: 2\nid: x\0y\ndata: b\n\nid\ndata: c\n\n",
        );
        let ids: Vec<_> = got.iter().map(|e| e.id.clone()).collect();
        assert_eq!(
            ids,
            vec![
                Some("1".to_owned()),
                Some("2".to_owned()),
                Some(String::new())
            ]
        );
    }

    #[test]
    fn id_does_not_carry_over() {
        let got = assert_same_everywhere(b"id: 1\ndata: a\n\ndata: b\n\n");
        assert_eq!(got[1].id, None);
    }

    #[test]
    fn unterminated_last_event_dropped_and_pending() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: a\n\ndata: b\n", &mut out);
        assert_eq!(simple(&out), vec![ev("message", "a")]);
        assert!(p.pending());
        p.feed(b"\n", &mut out);
        assert!(!p.pending());
        p.feed(b": comment without end", &mut out);
        assert!(p.pending());
    }

    #[test]
    fn offsets_point_at_first_field_line() {
        let got = assert_same_everywhere(b"\xEF\xBB\xBF: c\ndata: a\n\n\r\nevent: e\ndata: b\n\n");
        assert_eq!(got[0].offset, 7);
        assert_eq!(got[1].offset, 18);
    }
}
