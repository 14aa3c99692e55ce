//! Streaming tee: copy a response body as it is forwarded, up to a cap, and (for SSE)
//! follow the event stream to tell whether it ended cleanly.

use crate::probe::ChunkProbe;
use crate::sse::{SseEvent, SseParser};

/// How an event stream ended (see `docs/streaming.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndState {
    /// Not closed yet.
    Open,
    /// A `data: [DONE]` event was seen.
    Done,
    /// Closed without `[DONE]`, but every choice seen sent a non-null `finish_reason`.
    Finished,
    /// An `error` event, or a data object with a non-null top-level `error`.
    Error,
    /// Closed otherwise: cut short, an unterminated trailing event, or the cap passed.
    Truncated,
    /// The tee does not parse SSE.
    NotSse,
}

impl EndState {
    pub fn as_str(self) -> &'static str {
        match self {
            EndState::Open => "open",
            EndState::Done => "done",
            EndState::Finished => "finished",
            EndState::Error => "error",
            EndState::Truncated => "truncated",
            EndState::NotSse => "not_sse",
        }
    }
}

/// The terminal event seen first; later ones do not change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Terminal {
    Done,
    Error,
}

/// SSE parser plus end-state tracking; also used on whole bodies by the assembler.
#[derive(Debug, Default)]
pub struct SseTracker {
    parser: SseParser,
    events: Vec<SseEvent>,
    terminal: Option<Terminal>,
    /// `(choice index, finish_reason seen)`; a handful of entries, so a Vec.
    choices: Vec<(u64, bool)>,
}

impl SseTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse one chunk and update the end state with the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) {
        let before = self.events.len();
        self.parser.feed(chunk, &mut self.events);
        if self.terminal.is_some() {
            return;
        }
        for ev in &self.events[before..] {
            if ev.event == "error" {
                self.terminal = Some(Terminal::Error);
            } else if ev.data == "[DONE]" {
                self.terminal = Some(Terminal::Done);
            } else if let Some(probe) = ChunkProbe::read(&ev.data) {
                if probe.error {
                    self.terminal = Some(Terminal::Error);
                } else {
                    for (index, finished) in probe.choices {
                        match self.choices.iter_mut().find(|(i, _)| *i == index) {
                            // A finish_reason once seen stays: later chunks (usage, or
                            // a provider's trailing empty delta) do not reopen a choice.
                            Some(entry) => entry.1 |= finished,
                            None => self.choices.push((index, finished)),
                        }
                    }
                }
            }
            if self.terminal.is_some() {
                return;
            }
        }
    }

    /// Events dispatched so far.
    pub fn events(&self) -> &[SseEvent] {
        &self.events
    }

    /// The end state if the stream were closed now, with nothing lost to a cap.
    pub fn closed_state(&self) -> EndState {
        match self.terminal {
            Some(Terminal::Error) => EndState::Error,
            Some(Terminal::Done) => EndState::Done,
            None if self.parser.pending() => EndState::Truncated,
            None if !self.choices.is_empty() && self.choices.iter().all(|c| c.1) => {
                EndState::Finished
            }
            None => EndState::Truncated,
        }
    }

    fn saw_error(&self) -> bool {
        self.terminal == Some(Terminal::Error)
    }
}

/// Errors of [`StreamTee::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeeError {
    /// `push` after `close`.
    Closed,
}

impl std::fmt::Display for TeeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("push on a closed StreamTee")
    }
}

impl std::error::Error for TeeError {}

/// Copies a response body up to `max_bytes`, all or nothing.
#[derive(Debug)]
pub struct StreamTee {
    max_bytes: usize,
    buf: Vec<u8>,
    nbytes: u64,
    overflowed: bool,
    closed: bool,
    sse: Option<SseTracker>,
}

impl StreamTee {
    pub fn new(max_bytes: usize, sse: bool) -> Self {
        Self {
            max_bytes,
            buf: Vec::new(),
            nbytes: 0,
            overflowed: false,
            closed: false,
            sse: sse.then(SseTracker::new),
        }
    }

    /// Copy (and parse) one chunk. Returns `Ok(false)` once the cap has been passed.
    ///
    /// The chunk that would pass the cap is not copied at all, nor is anything after
    /// it, so the stored body is either whole or known to be incomplete. Parsing stops
    /// there too, which bounds the parser's buffers by the cap.
    pub fn push(&mut self, chunk: &[u8]) -> Result<bool, TeeError> {
        if self.closed {
            return Err(TeeError::Closed);
        }
        self.nbytes = self.nbytes.saturating_add(chunk.len() as u64);
        if self.overflowed {
            return Ok(false);
        }
        if chunk.len() > self.max_bytes - self.buf.len() {
            self.overflowed = true;
            // The partial copy is useless and may be large: give the memory back now.
            self.buf = Vec::new();
            return Ok(false);
        }
        self.buf.extend_from_slice(chunk);
        if let Some(tracker) = &mut self.sse {
            tracker.feed(chunk);
        }
        Ok(true)
    }

    /// Mark the end of the body. Idempotent.
    pub fn close(&mut self) {
        self.closed = true;
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Bytes pushed, including those not copied after an overflow.
    pub fn nbytes(&self) -> u64 {
        self.nbytes
    }

    pub fn end_state(&self) -> EndState {
        let Some(tracker) = &self.sse else {
            return EndState::NotSse;
        };
        if !self.closed {
            return EndState::Open;
        }
        if tracker.saw_error() {
            return EndState::Error;
        }
        if self.overflowed {
            return EndState::Truncated;
        }
        tracker.closed_state()
    }

    /// Closed cleanly (`Done` or `Finished`) with nothing lost to the cap.
    pub fn complete(&self) -> bool {
        matches!(self.end_state(), EndState::Done | EndState::Finished)
    }

    /// The copied bytes (empty after an overflow).
    pub fn body(&self) -> &[u8] {
        &self.buf
    }

    /// Events dispatched so far (empty without `sse`).
    pub fn events(&self) -> &[SseEvent] {
        self.sse.as_ref().map_or(&[], SseTracker::events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> StreamTee {
        let mut tee = StreamTee::new(1 << 20, true);
        for c in chunks {
            tee.push(c).unwrap();
        }
        tee.close();
        tee
    }

    const CHUNK0: &[u8] = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n";
    const CHUNK_END: &[u8] =
        b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";

    #[test]
    fn cap_is_all_or_nothing() {
        let mut tee = StreamTee::new(10, false);
        assert_eq!(tee.push(b"12345"), Ok(true));
        assert_eq!(tee.push(b"12345"), Ok(true));
        assert_eq!(tee.body(), b"1234512345");
        assert_eq!(tee.push(b"x"), Ok(false));
        assert!(tee.overflowed());
        assert_eq!(tee.body(), b"");
        assert_eq!(tee.push(b""), Ok(false));
        assert_eq!(tee.nbytes(), 11);
        tee.close();
        assert_eq!(tee.end_state(), EndState::NotSse);
        assert!(!tee.complete());
    }

    #[test]
    fn zero_cap() {
        let mut tee = StreamTee::new(0, false);
        assert_eq!(tee.push(b""), Ok(true));
        assert_eq!(tee.push(b"a"), Ok(false));
    }

    #[test]
    fn push_after_close_is_refused() {
        let mut tee = StreamTee::new(10, true);
        tee.close();
        tee.close();
        assert_eq!(tee.push(b"a"), Err(TeeError::Closed));
        assert_eq!(tee.nbytes(), 0);
    }

    #[test]
    fn open_until_closed() {
        let mut tee = StreamTee::new(100, true);
        tee.push(b"data: [DONE]\n\n").unwrap();
        assert_eq!(tee.end_state(), EndState::Open);
        assert!(!tee.complete());
        tee.close();
        assert_eq!(tee.end_state(), EndState::Done);
        assert!(tee.complete());
    }

    #[test]
    fn done_split_anywhere() {
        let body = [CHUNK0, CHUNK_END, b"data: [DONE]\n\n"].concat();
        for cut in 0..=body.len() {
            let tee = run(&[&body[..cut], &body[cut..]]);
            assert_eq!(tee.end_state(), EndState::Done);
            assert_eq!(tee.events().len(), 3);
        }
    }

    #[test]
    fn finished_without_done() {
        let tee = run(&[CHUNK0, CHUNK_END]);
        assert_eq!(tee.end_state(), EndState::Finished);
        assert!(tee.complete());
    }

    #[test]
    fn every_cut_before_the_end_is_truncated() {
        let body = [CHUNK0, CHUNK_END, b"data: [DONE]\n\n"].concat();
        let finished_at = CHUNK0.len() + CHUNK_END.len();
        for cut in 0..body.len() {
            let tee = run(&[&body[..cut]]);
            let want = if cut == finished_at {
                EndState::Finished
            } else {
                EndState::Truncated
            };
            // "data: [DONE]\n" without the blank line is not dispatched yet.
            assert_eq!(tee.end_state(), want, "cut at {cut}");
        }
    }

    #[test]
    fn one_unfinished_choice_is_truncated() {
        let other = b"data: {\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":null}]}\n\n";
        let tee = run(&[CHUNK0, other, CHUNK_END]);
        assert_eq!(tee.end_state(), EndState::Truncated);
    }

    #[test]
    fn errors_are_sticky() {
        let tee = run(&[CHUNK0, b"event: error\ndata: {}\n\n", b"data: [DONE]\n\n"]);
        assert_eq!(tee.end_state(), EndState::Error);
        assert!(!tee.complete());
        let tee = run(&[b"data: {\"error\":{\"message\":\"x\"}}\n\n", CHUNK_END]);
        assert_eq!(tee.end_state(), EndState::Error);
        let tee = run(&[b"data: {\"error\":null}\n\n", CHUNK_END]);
        assert_eq!(tee.end_state(), EndState::Finished);
    }

    #[test]
    fn events_after_done_do_not_change_the_state() {
        let tee = run(&[b"data: [DONE]\n\n", b"event: error\ndata: x\n\ndata: y"]);
        assert_eq!(tee.end_state(), EndState::Done);
        assert_eq!(tee.events().len(), 2);
    }

    #[test]
    fn trailing_unterminated_event_truncates() {
        let tee = run(&[CHUNK0, CHUNK_END, b"data: {}"]);
        assert_eq!(tee.end_state(), EndState::Truncated);
        let tee = run(&[CHUNK0, CHUNK_END, b": keep-alive\n"]);
        assert_eq!(tee.end_state(), EndState::Finished);
    }

    #[test]
    fn overflow_is_never_clean() {
        let mut tee = StreamTee::new(20, true);
        tee.push(b"data: [DONE]\n\n").unwrap();
        assert_eq!(tee.push(b"data: more than the cap\n\n"), Ok(false));
        tee.close();
        assert_eq!(tee.end_state(), EndState::Truncated);
        assert!(!tee.complete());
        assert_eq!(tee.events().len(), 1);
    }

    #[test]
    fn huge_line_is_bounded_by_the_cap() {
        let mut tee = StreamTee::new(1000, true);
        tee.push(b"data: ").unwrap();
        for _ in 0..10_000 {
            tee.push(&[b'a'; 100]).unwrap();
        }
        assert!(tee.overflowed());
        assert_eq!(tee.nbytes(), 1_000_006);
        // Parsing stopped at the cap: the parser holds at most the cap's worth.
        assert!(tee.sse.as_ref().unwrap().parser.position() <= 1000);
    }

    #[test]
    fn empty_stream_is_truncated() {
        let tee = run(&[]);
        assert_eq!(tee.end_state(), EndState::Truncated);
    }
}
