//! Property fuzz of the request-body scan and canonical JSON (stable Rust, proptest).
//!
//! Arbitrary and mutated bytes never panic; on valid JSON the scan agrees with
//! `serde_json`'s reading of the same fields, and canonical JSON is a fixed point that
//! `serde_json` reads back as the same document. The seeds in `tests/corpus/scan/`
//! (tricky inputs, and any input that ever found a bug) are replayed on every run.
use std::fmt::Write as _;

mod common;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use semcache_core::{Limits, ScanResult, canonical_json, scan_request};
use serde_json::{Map, Value};

/// Cases per property: enough to find shallow faults on every `cargo test`, few enough
/// that the suite stays fast in the debug profile.
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

/// Scan and canonicalise with default and tight limits; must return, never panic.
fn exercise(body: &[u8]) -> Option<ScanResult> {
    let tight = Limits {
        max_depth: 3,
        max_bytes: 64,
    };
    let _ = canonical_json(body, tight);
    let _ = scan_request(body, tight);
    if let Ok(c) = canonical_json(body, Limits::default()) {
        // Canonical output is valid input, and its own canonical form.
        let again = canonical_json(&c, Limits::default()).expect("canonical output parses");
        assert_eq!(again, c);
    }
    let result = scan_request(body, Limits::default()).ok();
    if let Some(r) = &result {
        let _ = r.turns(body);
    }
    result
}

// --- strategies ---------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z ]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
        Just("\u{0}\"\\\u{1f}\u{7f}\u{2028}\u{1F600}".to_owned()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn turn() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        Just("user"),
        Just("assistant"),
        Just("system"),
        Just("tool")
    ];
    let content = prop_oneof![
        text().prop_map(Value::String),
        prop::collection::vec(
            prop_oneof![
                text().prop_map(|t| serde_json::json!({"type": "text", "text": t})),
                text().prop_map(Value::String),
                json_value(),
            ],
            0..4
        )
        .prop_map(Value::Array),
        json_value(),
    ];
    (role, content).prop_map(|(r, c)| serde_json::json!({"role": r, "content": c}))
}

/// Request bodies shaped like the ones the cache meets: lookup fields, model, stream,
/// system, other parameters, in any mix.
fn body() -> impl Strategy<Value = Value> {
    let lookup = prop_oneof![
        text().prop_map(Value::String),
        prop::collection::vec(turn(), 0..4).prop_map(Value::Array),
        json_value(),
    ];
    (
        prop::collection::btree_map(
            prop_oneof![
                Just("query".to_owned()),
                Just("prompt".to_owned()),
                Just("input".to_owned()),
                Just("messages".to_owned()),
            ],
            lookup,
            0..3,
        ),
        prop::option::of(prop_oneof![text().prop_map(Value::String), json_value()]),
        prop::option::of(prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            json_value()
        ]),
        prop::option::of(json_value()),
        prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..4),
    )
        .prop_map(|(lookups, model, stream, system, params)| {
            let mut m = Map::new();
            for (k, v) in params {
                m.insert(k, v);
            }
            for (k, v) in lookups {
                m.insert(k, v);
            }
            for (k, v) in [("model", model), ("stream", stream), ("system", system)] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            Value::Object(m)
        })
}

/// The text `extract_content` reads from a content value (docs/native.md).
fn content_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let parts: Vec<&str> = items
                .iter()
                .filter_map(|e| match e {
                    Value::String(s) => Some(s.as_str()),
                    Value::Object(o) => {
                        let is_text = matches!(
                            o.get("type").and_then(Value::as_str),
                            Some("text" | "input_text" | "output_text")
                        );
                        o.get("text").and_then(Value::as_str).filter(|_| is_text)
                    }
                    _ => None,
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join("\n"))
        }
        _ => None,
    }
}

/// `serde_json`'s reading of what the scan extracts: (query, field, model, stream).
fn expected(doc: &Map<String, Value>) -> (Option<String>, Option<&'static str>) {
    let field = ["query", "prompt", "input", "messages"]
        .into_iter()
        .find(|f| doc.contains_key(*f));
    let Some(f) = field else {
        return (None, None);
    };
    let value = &doc[f];
    if let Value::Array(items) = value
        && let Some(Value::Object(last)) = items.last()
        && last.contains_key("role")
    {
        let query = (last.get("role").and_then(Value::as_str) == Some("user"))
            .then(|| last.get("content").and_then(content_text))
            .flatten();
        return (query, Some(f));
    }
    (content_text(value), Some(f))
}

/// Numbers compared as the canonical form writes them (every number a double).
fn as_doubles(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
        Value::Array(a) => Value::Array(a.iter().map(as_doubles).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), as_doubles(v))).collect())
        }
        other => other.clone(),
    }
}

/// `json` with every non-ASCII character written as `\u` escapes (the same document).
fn ascii_escaped(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                write!(out, "\\u{u:04x}").expect("write to a String");
            }
        }
    }
    out
}

/// Byte-level damage: flip, insert, delete or duplicate a few bytes.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, op, b) in edits {
        let i = if bytes.is_empty() {
            0
        } else {
            at % bytes.len()
        };
        match op % 5 {
            0 if !bytes.is_empty() => bytes[i] ^= b | 1,
            1 => bytes.insert(i.min(bytes.len()), b),
            2 if !bytes.is_empty() => {
                bytes.remove(i);
            }
            3 if !bytes.is_empty() => {
                let tail = bytes[i..].to_vec();
                bytes.extend_from_slice(&tail[..tail.len().min(16)]);
            }
            _ => bytes.truncate(i),
        }
    }
    bytes
}

/// Pieces of JSON (and of broken JSON) that the scan treats specially.
const JSON_PIECES: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"\\u",
    b"d800",
    b"dc00",
    b"\"messages\"",
    b"\"role\"",
    b"\"user\"",
    b"\"content\"",
    b"\"text\"",
    b"\"type\"",
    b"\"query\"",
    b"\"model\"",
    b"\"stream\"",
    b"1e999",
    b"-0",
    b"true",
    b"null",
    b" ",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xef\xbb\xbf",
];

// --- properties ---------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        exercise(&body);
    }

    #[test]
    fn json_shaped_noise_never_panics(
        parts in prop::collection::vec(prop::sample::select(JSON_PIECES), 0..48)
    ) {
        exercise(&parts.concat());
    }

    #[test]
    fn valid_bodies_scan_as_serde_json_reads_them(doc in body()) {
        let bytes = serde_json::to_vec(&doc).expect("serialise");
        let r = exercise(&bytes).unwrap_or_else(|| panic!("refused {}", String::from_utf8_lossy(&bytes)));
        let map = doc.as_object().expect("object");
        let (query, field) = expected(map);
        prop_assert_eq!(r.query, query);
        prop_assert_eq!(r.query_field, field);
        prop_assert_eq!(r.model.as_deref(), map.get("model").and_then(Value::as_str));
        prop_assert_eq!(r.stream, map.get("stream").and_then(Value::as_bool));
    }

    #[test]
    fn canonical_json_is_read_back_as_the_same_document(doc in json_value()) {
        let bytes = serde_json::to_vec_pretty(&doc).expect("serialise");
        let canon = canonical_json(&bytes, Limits::default()).expect("valid JSON");
        let back: Value = serde_json::from_slice(&canon).expect("canonical output is JSON");
        prop_assert_eq!(as_doubles(&back), as_doubles(&doc));
    }

    #[test]
    fn respelled_bodies_scan_alike(doc in body()) {
        // Pretty-printed (other white space) and ASCII-escaped: the same document.
        let compact = serde_json::to_vec(&doc).expect("serialise");
        let pretty = serde_json::to_vec_pretty(&doc).expect("serialise");
        let escaped = ascii_escaped(std::str::from_utf8(&compact).expect("utf-8"));
        let a = scan_request(&compact, Limits::default()).expect("valid");
        let b = scan_request(&pretty, Limits::default()).expect("valid");
        let c = scan_request(escaped.as_bytes(), Limits::default()).expect("valid");
        prop_assert_eq!(&a.query, &b.query);
        prop_assert_eq!(&a.query, &c.query);
        prop_assert_eq!(a.params_digest, b.params_digest);
        prop_assert_eq!(a.params_digest, c.params_digest);
        prop_assert_eq!(a.context_digest, b.context_digest);
        prop_assert_eq!(a.context_digest, c.context_digest);
    }

    #[test]
    fn mutated_bodies_never_panic(
        doc in body(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let bytes = serde_json::to_vec(&doc).expect("serialise");
        exercise(&mutate(bytes, &edits));
    }
}

// --- deep and large inputs (fixed, not random: one of each is enough) ----------------

#[test]
fn deep_nesting_is_refused_without_recursion() {
    for (open, close) in [(b'[', b']'), (b'{', b'}')] {
        let depth = 100_000;
        let mut body = Vec::with_capacity(depth * 8);
        body.extend_from_slice(b"{\"query\":\"q\",\"x\":");
        for _ in 0..depth {
            body.push(open);
            if open == b'{' {
                body.extend_from_slice(b"\"k\":");
            }
        }
        body.push(b'1');
        body.extend(std::iter::repeat_n(close, depth));
        body.push(b'}');
        exercise(&body);
    }
}

// --- the kept corpus ----------------------------------------------------------------

#[test]
fn corpus_replays() {
    let seeds = common::corpus("scan");
    assert!(seeds.len() >= 5, "the scan corpus holds its seeds");
    for (path, bytes) in seeds {
        let result = exercise(&bytes);
        // Where serde_json reads an object without duplicate keys, the scan agrees.
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&bytes)
            && let Some(r) = &result
        {
            let (query, field) = expected(&map);
            assert_eq!(r.query, query, "{}", path.display());
            assert_eq!(r.query_field, field, "{}", path.display());
        }
        // Every byte-level cut of a seed is handled too.
        for cut in 0..bytes.len().min(512) {
            exercise(&bytes[..cut]);
        }
    }
}
