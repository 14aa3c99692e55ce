//! Canonical JSON: every rule of the form, and every error kind with its offset.
use semcache_core::{Limits, ScanErrorKind, canonical_json};

fn canon(s: &str) -> String {
    let out = canonical_json(s.as_bytes(), Limits::default())
        .unwrap_or_else(|e| panic!("{s:?} failed: {e}"));
    String::from_utf8(out).expect("canonical output is UTF-8")
}

fn err(s: &[u8]) -> (ScanErrorKind, usize) {
    let e = canonical_json(s, Limits::default()).expect_err("should fail");
    (e.kind, e.offset)
}

#[test]
fn removes_white_space_and_sorts_keys_by_code_point() {
    assert_eq!(
        canon(" { \"b\" : 1 ,\n\"a\":[ 1 , 2 ],\t\"A\":{}}\r"),
        r#"{"A":{},"a":[1e0,2e0],"b":1e0}"#
    );
    // UTF-8 byte order is code point order: U+00E9 < U+4E2D < U+1F600.
    assert_eq!(
        canon("{\"\u{1F600}\":1,\"\u{4E2D}\":2,\"\u{e9}\":3,\"z\":4}"),
        "{\"z\":4e0,\"\u{e9}\":3e0,\"\u{4E2D}\":2e0,\"\u{1F600}\":1e0}"
    );
    // Escaped keys sort by their decoded value.
    assert_eq!(canon(r#"{"b":1,"\u0061":2}"#), r#"{"a":2e0,"b":1e0}"#);
    assert_eq!(
        canon(r#"{"a":{"d":1,"c":{"f":1,"e":2}},"0":null}"#),
        r#"{"0":null,"a":{"c":{"e":2e0,"f":1e0},"d":1e0}}"#
    );
}

#[test]
fn arrays_keep_order_and_literals_stay() {
    assert_eq!(
        canon("[true, false, null, [], {}, [[]]]"),
        "[true,false,null,[],{},[[]]]"
    );
    assert_eq!(canon(" \"x\" "), "\"x\"");
    assert_eq!(canon("null"), "null");
}

#[test]
fn numbers_are_exact_decimal() {
    let cases = [
        ("0", "0"),
        ("-0", "0"),
        ("0.0", "0"),
        ("0e5", "0"),
        ("-0.000E-7", "0"),
        ("1", "1e0"),
        ("1.50", "15e-1"),
        ("100", "1e2"),
        ("-0.02", "-2e-2"),
        ("1e2", "1e2"),
        ("10E+1", "1e2"),
        ("0.1e1", "1e0"),
        ("123.456e-3", "123456e-6"),
        (
            "1000000000000000000000000000001",
            "1000000000000000000000000000001e0",
        ),
        ("0.00000000000000000000000000000000000000000000001", "1e-47"),
        ("1e999999999", "1e999999999"),
        ("10e999999999", "1e1000000000"),
        ("-1e-1000000000", "-1e-1000000000"),
        ("0e99999999999999999999999999999999", "0"),
        ("100e-1000000002", "1e-1000000000"),
    ];
    for (input, want) in cases {
        assert_eq!(canon(input), want, "number {input}");
    }
}

#[test]
fn numbers_out_of_range_and_malformed() {
    assert_eq!(err(b"[1e1000000001]"), (ScanErrorKind::InvalidJson, 1));
    assert_eq!(
        err(b"[1, -5e-99999999999999999999999999999]"),
        (ScanErrorKind::InvalidJson, 4)
    );
    assert_eq!(err(b"-"), (ScanErrorKind::InvalidJson, 1));
    assert_eq!(err(b"01"), (ScanErrorKind::InvalidJson, 1));
    assert_eq!(err(b"1."), (ScanErrorKind::InvalidJson, 2));
    assert_eq!(err(b".5"), (ScanErrorKind::InvalidJson, 0));
    assert_eq!(err(b"1e"), (ScanErrorKind::InvalidJson, 2));
    assert_eq!(err(b"1e+"), (ScanErrorKind::InvalidJson, 3));
    assert_eq!(err(b"+1"), (ScanErrorKind::InvalidJson, 0));
    assert_eq!(err(b"[NaN]"), (ScanErrorKind::InvalidJson, 1));
    assert_eq!(err(b"Infinity"), (ScanErrorKind::InvalidJson, 0));
    assert_eq!(err(b"[-Infinity]"), (ScanErrorKind::InvalidJson, 2));
}

#[test]
fn strings_use_minimal_escapes() {
    assert_eq!(canon(r#""\/\"\\\b\f\n\r\t""#), r#""/\"\\\b\f\n\r\t""#);
    assert_eq!(
        canon(r#""\u0000\u001f\u0001\u000B""#),
        r#""\u0000\u001f\u0001\u000b""#
    );
    assert_eq!(
        canon(r#""\u007f\u00e9\u4E2D\ud83d\ude00""#),
        "\"\u{7f}\u{e9}\u{4E2D}\u{1F600}\""
    );
    assert_eq!(canon(r#""\u0022\u005c""#), r#""\"\\""#);
    assert_eq!(
        canon("\"caf\u{e9} / \u{1F600}\""),
        "\"caf\u{e9} / \u{1F600}\""
    );
    let long = "x".repeat(500);
    assert_eq!(
        canon(&format!("{{\"b\":\"{long}\",\"a\":\"{long}\\n\"}}")),
        format!("{{\"a\":\"{long}\\n\",\"b\":\"{long}\"}}")
    );
}

#[test]
fn string_errors_have_offsets() {
    assert_eq!(err(b"\"a\x01\""), (ScanErrorKind::InvalidJson, 2));
    assert_eq!(err(b"\"ab\\n\x1f\""), (ScanErrorKind::InvalidJson, 5));
    assert_eq!(err(b"\"abc"), (ScanErrorKind::InvalidJson, 4));
    assert_eq!(err(b"\"a\\x\""), (ScanErrorKind::InvalidJson, 2));
    assert_eq!(err(b"\"a\\u12G4\""), (ScanErrorKind::InvalidJson, 2));
    assert_eq!(err(b"\"a\\"), (ScanErrorKind::InvalidJson, 3));
    assert_eq!(
        err(br#"["ok", "\ud800"]"#),
        (ScanErrorKind::LoneSurrogate, 8)
    );
    assert_eq!(err(br#""\udc00\ud800""#), (ScanErrorKind::LoneSurrogate, 1));
    assert_eq!(
        err(br#""x\ud800\u0041""#),
        (ScanErrorKind::LoneSurrogate, 2)
    );
    assert_eq!(err(br#""x\ud800""#), (ScanErrorKind::LoneSurrogate, 2));
    assert_eq!(err(br#"{"\ud800":1}"#), (ScanErrorKind::LoneSurrogate, 2));
}

#[test]
fn utf8_is_validated_everywhere() {
    assert_eq!(err(b"\"ab\xff\""), (ScanErrorKind::InvalidUtf8, 3));
    assert_eq!(err(b"[1, \xc3]"), (ScanErrorKind::InvalidUtf8, 4));
    // An encoded surrogate is not UTF-8.
    assert_eq!(err(b"\"\xed\xa0\x80\""), (ScanErrorKind::InvalidUtf8, 1));
    // A BOM is valid UTF-8 but not JSON.
    assert_eq!(err(b"\xef\xbb\xbf{}"), (ScanErrorKind::InvalidJson, 0));
}

#[test]
fn syntax_errors_have_offsets() {
    assert_eq!(err(b""), (ScanErrorKind::InvalidJson, 0));
    assert_eq!(err(b"   "), (ScanErrorKind::InvalidJson, 3));
    assert_eq!(err(b"[1,]"), (ScanErrorKind::InvalidJson, 3));
    assert_eq!(err(b"{\"a\":1,}"), (ScanErrorKind::InvalidJson, 7));
    assert_eq!(err(b"{\"a\" 1}"), (ScanErrorKind::InvalidJson, 5));
    assert_eq!(err(b"{a:1}"), (ScanErrorKind::InvalidJson, 1));
    assert_eq!(err(b"[1 2]"), (ScanErrorKind::InvalidJson, 3));
    assert_eq!(err(b"{} {}"), (ScanErrorKind::InvalidJson, 3));
    assert_eq!(err(b"[1] // c"), (ScanErrorKind::InvalidJson, 4));
    assert_eq!(err(b"[tru]"), (ScanErrorKind::InvalidJson, 1));
    assert_eq!(err(b"[\x0c1]"), (ScanErrorKind::InvalidJson, 1));
    assert_eq!(err(b"{\"a\":[1,{\"b\":"), (ScanErrorKind::InvalidJson, 13));
    assert_eq!(err(b"[1"), (ScanErrorKind::InvalidJson, 2));
}

#[test]
fn duplicate_keys_are_refused_in_any_object() {
    let e =
        canonical_json(br#"{"a":1,"b":{"x":1,"y":2,"x":3}}"#, Limits::default()).expect_err("dup");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::DuplicateKey, 24));
    assert!(e.message.contains("\"x\""), "{}", e.message);
    // Compared after unescaping.
    let e = canonical_json(br#"[{"ab":1,"a\u0062":2}]"#, Limits::default()).expect_err("dup");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::DuplicateKey, 9));
    // The second occurrence that comes first in the document is reported.
    let e =
        canonical_json(br#"{"b":1,"a":1,"c":0,"a":2,"b":2}"#, Limits::default()).expect_err("dup");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::DuplicateKey, 19));
    // Many keys.
    let mut body = String::from("{");
    for i in 0..100 {
        body += &["\"k", &i.to_string(), "\":0,"].concat();
    }
    body.push_str("\"k42\":0}");
    let e = canonical_json(body.as_bytes(), Limits::default()).expect_err("dup");
    assert_eq!(e.kind, ScanErrorKind::DuplicateKey);
    assert_eq!(e.offset, body.len() - 8);
}

#[test]
fn depth_and_size_limits() {
    let limits = Limits {
        max_depth: 3,
        max_bytes: 100,
    };
    assert!(canonical_json(b"[[[1]]]", limits).is_ok());
    let e = canonical_json(b"[[[[1]]]]", limits).expect_err("deep");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::TooDeep, 3));
    let e = canonical_json(b"[{\"a\":{\"b\":{}}}]", limits).expect_err("deep");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::TooDeep, 11));
    let e = canonical_json(&[b' '; 101], limits).expect_err("large");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::TooLarge, 100));
    // Far deeper than any stack would allow with recursion: refused, no crash.
    let deep = "[".repeat(1_000_000);
    let e = canonical_json(deep.as_bytes(), Limits::default()).expect_err("deep");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::TooDeep, 128));
    let big = Limits {
        max_depth: 2_000_000,
        max_bytes: usize::MAX,
    };
    let e = canonical_json(deep.as_bytes(), big).expect_err("unterminated");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::InvalidJson, 1_000_000));
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let out = canonical_json(nested.as_bytes(), big).expect("deep but valid");
    assert_eq!(out, nested.as_bytes());
}
