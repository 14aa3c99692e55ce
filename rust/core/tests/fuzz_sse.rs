//! Property fuzz of the SSE parser, the end-state tracker and the tee (stable Rust,
//! proptest).
//!
//! Any bytes in any chunking give the same events as the whole stream at once, and never
//! panic; well-formed streams written with any line endings, comments and BOM parse back
//! to the events they were written from. The seeds in `tests/corpus/sse/` are replayed
//! at every single cut and byte by byte on every run.

mod common;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use semcache_core::chat;
use semcache_core::sse::{SseEvent, SseParser, parse};
use semcache_core::tee::{SseTracker, StreamTee};

const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        // PROPTEST_CASES overrides it for a longer run.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CASES),
        // A failure's seed lands in `tests/<file>.proptest-regressions`: commit it.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// `body` cut at `cuts` (any offsets; out-of-range ones are clamped, order is free).
fn chunks<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    at.push(0);
    at.push(body.len());
    at.sort_unstable();
    at.windows(2).map(|w| &body[w[0]..w[1]]).collect()
}

fn feed_all(pieces: &[&[u8]]) -> (Vec<SseEvent>, SseParser) {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    for piece in pieces {
        parser.feed(piece, &mut out);
    }
    (out, parser)
}

/// The chunk-invariance property on one body, with the tracker and tee alongside.
fn check_chunking(body: &[u8], cuts: &[usize]) {
    let whole = parse(body);
    let pieces = chunks(body, cuts);
    let (events, parser) = feed_all(&pieces);
    assert_eq!(events, whole, "chunked {pieces:?}");
    assert_eq!(parser.position(), body.len());
    // Offsets point into the stream, in order.
    assert!(events.windows(2).all(|w| w[0].offset < w[1].offset));
    assert!(events.iter().all(|e| e.offset < body.len()));

    let mut one = SseTracker::new();
    one.feed(body);
    let mut many = SseTracker::new();
    // One tee with room for the whole body, one whose cap the body passes (from 3 bytes).
    let mut whole_tee = StreamTee::new(body.len(), true);
    let mut small_tee = StreamTee::new(body.len() / 2 + 1, true);
    for piece in &pieces {
        many.feed(piece);
        assert!(whole_tee.push(piece).expect("open"));
        let _ = small_tee.push(piece).expect("open");
    }
    assert_eq!(one.closed_state(), many.closed_state());
    assert_eq!(one.events(), many.events());
    whole_tee.close();
    small_tee.close();
    assert_eq!(whole_tee.body(), body);
    assert_eq!(whole_tee.events(), &whole[..]);
    assert_eq!(whole_tee.end_state(), one.closed_state());
    assert_eq!(small_tee.nbytes(), body.len() as u64);
    if body.len() > body.len() / 2 + 1 {
        // All or nothing: past the cap nothing is kept, and it is never complete.
        assert!(small_tee.overflowed());
        assert!(small_tee.body().is_empty());
        assert!(!small_tee.complete());
    }
    // The tee and the whole body assemble alike, and only a complete stream does.
    let from_tee = chat::assemble_tee(&whole_tee).ok();
    assert_eq!(from_tee, chat::assemble_body(body).ok());
    if from_tee.is_some() {
        assert!(whole_tee.complete());
    }
    assert!(chat::assemble_tee(&small_tee).is_err() || body.len() < 3);
    let _ = chat::assemble_events(&whole);
}

// --- strategies ---------------------------------------------------------------------

/// A field value: no CR, LF (they end lines) and, for ids, no NUL.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z :]{0,10}",
        any::<String>().prop_map(|s| s
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n'))
            .take(10)
            .collect()),
        Just("[DONE]".to_owned()),
        Just(
            r#"{"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}"#.to_owned()
        ),
        Just(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.to_owned()),
        Just(r#"{"error":{"message":"overloaded"}}"#.to_owned()),
    ]
}

#[derive(Clone, Debug)]
struct Ev {
    event: Option<String>,
    data: Vec<String>,
    id: Option<String>,
    retry: Option<u64>,
    comment: Option<String>,
}

fn events() -> impl Strategy<Value = Vec<Ev>> {
    let ev = (
        prop::option::of("[a-z]{1,8}"),
        prop::collection::vec(value(), 1..4),
        prop::option::of(value().prop_map(|v| v.replace('\0', ""))),
        prop::option::of(any::<u64>()),
        prop::option::of(value()),
    )
        .prop_map(|(event, data, id, retry, comment)| Ev {
            event,
            data,
            id,
            retry,
            comment,
        });
    prop::collection::vec(ev, 0..6)
}

/// The stream of `evs`, each line ended by one of `ends` in turn.
fn write(evs: &[Ev], ends: &[&[u8]], bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice(b"\xEF\xBB\xBF");
    }
    let mut n = 0;
    let mut line = |out: &mut Vec<u8>, text: &[u8]| {
        let mut end = ends[n % ends.len()];
        // CR then an empty line's LF would read as one CRLF: end that line with CR too.
        if text.is_empty() && end == b"\n" && out.last() == Some(&b'\r') {
            end = b"\r";
        }
        out.extend_from_slice(text);
        out.extend_from_slice(end);
        n += 1;
    };
    for e in evs {
        if let Some(c) = &e.comment {
            line(&mut out, format!(":{c}").as_bytes());
        }
        if let Some(name) = &e.event {
            line(&mut out, format!("event: {name}").as_bytes());
        }
        for d in &e.data {
            line(&mut out, format!("data: {d}").as_bytes());
        }
        if let Some(id) = &e.id {
            line(&mut out, format!("id: {id}").as_bytes());
        }
        if let Some(r) = e.retry {
            line(&mut out, format!("retry: {r}").as_bytes());
        }
        line(&mut out, b"");
    }
    out
}

const LINE_ENDS: &[&[u8]] = &[b"\n", b"\r\n", b"\r"];

const SSE_PIECES: &[&[u8]] = &[
    b"data:",
    b"data: ",
    b"event:",
    b"id:",
    b"retry:",
    b":",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"\xEF",
    b"\xBB",
    b"\xBF",
    b"\0",
    b"[DONE]",
    b"{\"choices\":[",
    b"{\"error\":1}",
    b"error",
    b"123",
    b"\xff",
    b"\xe2\x82",
];

// --- properties ---------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_any_chunking(
        body in prop::collection::vec(any::<u8>(), 0..256),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        check_chunking(&body, &cuts);
    }

    #[test]
    fn sse_shaped_noise_any_chunking(
        parts in prop::collection::vec(prop::sample::select(SSE_PIECES), 0..48),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        check_chunking(&parts.concat(), &cuts);
    }

    #[test]
    fn written_events_parse_back_in_any_chunking(
        evs in events(),
        ends in prop::collection::vec(prop::sample::select(LINE_ENDS), 1..4),
        bom in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let body = write(&evs, &ends, bom);
        check_chunking(&body, &cuts);
        let got = parse(&body);
        prop_assert_eq!(got.len(), evs.len());
        for (g, e) in got.iter().zip(&evs) {
            prop_assert_eq!(&g.event, e.event.as_deref().unwrap_or("message"));
            prop_assert_eq!(&g.data, &e.data.join("\n"));
            prop_assert_eq!(&g.id, &e.id);
            prop_assert_eq!(g.retry, e.retry);
        }
    }

    #[test]
    fn mutated_streams_any_chunking(
        evs in events(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut body = write(&evs, &[b"\n"], false);
        for (at, b) in edits {
            let i = at % (body.len() + 1);
            if b % 2 == 0 && i < body.len() {
                body.remove(i);
            } else {
                body.insert(i, b);
            }
        }
        check_chunking(&body, &cuts);
    }
}

// --- the kept corpus ----------------------------------------------------------------

#[test]
fn corpus_replays_at_every_cut() {
    let seeds = common::corpus("sse");
    assert!(seeds.len() >= 5, "the SSE corpus holds its seeds");
    for (path, body) in seeds {
        let whole = parse(&body);
        for cut in 0..=body.len() {
            check_chunking(&body, &[cut]);
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        let (events, _) = feed_all(&bytes);
        assert_eq!(events, whole, "{} byte by byte", path.display());
    }
}
