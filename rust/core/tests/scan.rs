//! The request-body scan: each extraction rule, the digests, turns, and errors.
use semcache_core::{Limits, ScanErrorKind, ScanResult, scan_request};

fn scan(body: &str) -> ScanResult {
    scan_request(body.as_bytes(), Limits::default()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn h(canonical: &str) -> [u8; 32] {
    *blake3::hash(canonical.as_bytes()).as_bytes()
}

fn err(body: &[u8]) -> (ScanErrorKind, usize) {
    let e = scan_request(body, Limits::default()).expect_err("should fail");
    (e.kind, e.offset)
}

fn turns(r: &ScanResult, body: &str) -> Vec<(String, String)> {
    r.turns(body.as_bytes())
}

fn t(role: &str, text: &str) -> (String, String) {
    (role.to_owned(), text.to_owned())
}

#[test]
fn openai_chat_with_string_content() {
    let body = r#"{"model":"gpt-4o","stream":true,"temperature":0.50,"messages":[
        {"role":"system","content":"Be brief."},{"role":"user","content":"Hi \u00e9"}]}"#;
    let r = scan(body);
    assert_eq!(r.query.as_deref(), Some("Hi \u{e9}"));
    assert_eq!(r.query_field, Some("messages"));
    assert_eq!(r.model.as_deref(), Some("gpt-4o"));
    assert_eq!(r.stream, Some(true));
    assert_eq!(r.params_digest, h(r#"{"temperature":5e-1}"#));
    assert_eq!(
        r.context_digest,
        h(
            r#"["messages",null,[{"content":"Be brief.","role":"system"},{"content":null,"role":"user"}]]"#
        )
    );
    assert_eq!(
        turns(&r, body),
        vec![t("system", "Be brief."), t("user", "Hi \u{e9}")]
    );
}

#[test]
fn content_blocks_with_images_next_to_text() {
    let body = r#"{"messages":[{"role":"assistant","content":"ok"},{"content":[
        {"type":"text","text":"a"},
        {"type":"image_url","image_url":{"url":"data:x"}},
        "b",
        {"text":"c","type":"input_text","cache_control":{"type":"ephemeral"}},
        {"type":"text","text":7}
      ],"role":"user","name":"u"}],"model":"m"}"#;
    let r = scan(body);
    assert_eq!(r.query.as_deref(), Some("a\nb\nc"));
    assert_eq!(r.params_digest, h("{}"));
    assert_eq!(
        r.context_digest,
        h(concat!(
            r#"["messages",null,[{"content":"ok","role":"assistant"},{"content":["#,
            r#"{"type":"text"},{"image_url":{"url":"data:x"},"type":"image_url"},null,"#,
            r#"{"cache_control":{"type":"ephemeral"},"type":"input_text"},{"text":7e0,"type":"text"}"#,
            r#"],"name":"u","role":"user"}]]"#
        ))
    );
    assert_eq!(
        turns(&r, body),
        vec![t("assistant", "ok"), t("user", "a\nb\nc")]
    );
}

#[test]
fn text_member_first_or_only_is_cut_cleanly() {
    let body = r#"{"input":[{"type":"output_text","text":"x"},{"text":"y","type":"text","z":1},{"type":"t\u0065xt","text":"\n"}]}"#;
    let r = scan(body);
    assert_eq!(r.query.as_deref(), Some("x\ny\n\n"));
    assert_eq!(
        r.context_digest,
        h(r#"["input",null,[{"type":"output_text"},{"type":"text","z":1e0},{"type":"text"}]]"#)
    );
    // No text part at all: no query, the value is kept whole.
    let r = scan(r#"{"input":[{"type":"image"},3]}"#);
    assert_eq!(r.query, None);
    assert_eq!(
        r.context_digest,
        h(r#"["input",null,[{"type":"image"},3e0]]"#)
    );
}

#[test]
fn anthropic_system_and_blocks() {
    let body = r#"{"model":"claude","max_tokens":1024,"system":[{"type":"text","text":"You are terse."}],
        "messages":[{"role":"user","content":[{"type":"text","text":"Why?"}]}]}"#;
    let r = scan(body);
    assert_eq!(r.query.as_deref(), Some("Why?"));
    assert_eq!(r.params_digest, h(r#"{"max_tokens":1024e0}"#));
    assert_eq!(
        r.context_digest,
        h(
            r#"["messages",[{"text":"You are terse.","type":"text"}],[{"content":[{"type":"text"}],"role":"user"}]]"#
        )
    );
    assert_eq!(
        turns(&r, body),
        vec![t("system", "You are terse."), t("user", "Why?")]
    );
    // A system value with no text still yields a system turn.
    let body = r#"{"system":5,"query":"q"}"#;
    let r = scan(body);
    assert_eq!(turns(&r, body), vec![t("system", ""), t("user", "q")]);
    assert_eq!(r.context_digest, h(r#"["query",5e0,null]"#));
}

#[test]
fn responses_api_input_items() {
    let body = r#"{"model":"gpt-4.1","input":[{"role":"developer","content":"rules"},
        {"type":"message","role":"user","content":[{"type":"input_text","text":"hello"},{"type":"input_image","image_url":"u"}]}]}"#;
    let r = scan(body);
    assert_eq!(r.query_field, Some("input"));
    assert_eq!(r.query.as_deref(), Some("hello"));
    assert_eq!(
        r.context_digest,
        h(concat!(
            r#"["input",null,[{"content":"rules","role":"developer"},"#,
            r#"{"content":[{"type":"input_text"},{"image_url":"u","type":"input_image"}],"role":"user","type":"message"}]]"#
        ))
    );
    assert_eq!(
        turns(&r, body),
        vec![t("developer", "rules"), t("user", "hello")]
    );
}

#[test]
fn prompt_and_embedding_inputs() {
    let r = scan(r#"{"prompt":["a","b"],"model":"m","n":2}"#);
    assert_eq!(r.query.as_deref(), Some("a\nb"));
    assert_eq!(r.context_digest, h(r#"["prompt",null,[null,null]]"#));
    assert_eq!(r.params_digest, h(r#"{"n":2e0}"#));
    let body = r#"{"input":"embed me","model":"text-embedding-3-small","dimensions":256}"#;
    let r = scan(body);
    assert_eq!(r.query.as_deref(), Some("embed me"));
    assert_eq!(r.context_digest, h(r#"["input",null,null]"#));
    assert_eq!(turns(&r, body), vec![t("user", "embed me")]);
    let r = scan(r#"{"input":[[1,2],[3]]}"#);
    assert_eq!(r.query, None);
    assert_eq!(r.context_digest, h(r#"["input",null,[[1e0,2e0],[3e0]]]"#));
    let r = scan(r#"{"input":[]}"#);
    assert_eq!(r.query, None);
    assert_eq!(r.context_digest, h(r#"["input",null,[]]"#));
}

#[test]
fn last_turn_not_user_has_no_query() {
    let body = r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]}"#;
    let r = scan(body);
    assert_eq!(r.query, None);
    assert_eq!(
        r.context_digest,
        h(
            r#"["messages",null,[{"content":"x","role":"user"},{"content":"y","role":"assistant"}]]"#
        )
    );
    assert_eq!(turns(&r, body), vec![t("user", "x"), t("assistant", "y")]);
    // A user turn without content, and a role that is not a string.
    let r = scan(r#"{"messages":[{"role":"user"}]}"#);
    assert_eq!(
        (r.query.clone(), r.context_digest),
        (None, h(r#"["messages",null,[{"role":"user"}]]"#))
    );
    let body = r#"{"messages":[{"role":"user","content":"a"},{"role":1,"content":"b"}]}"#;
    let r = scan(body);
    assert_eq!(r.query, None);
    assert_eq!(turns(&r, body), vec![t("user", "a")]);
    // Last element is not an object with a role: content rules apply to the list.
    let r = scan(r#"{"messages":[{"role":"user","content":"a"},"tail"]}"#);
    assert_eq!(r.query.as_deref(), Some("tail"));
    assert_eq!(
        r.context_digest,
        h(r#"["messages",null,[{"content":"a","role":"user"},null]]"#)
    );
}

#[test]
fn lookup_priority_and_parameters() {
    let r = scan(
        r#"{"messages":[{"role":"user","content":"m"}],"input":"i","query":"q","prompt":"p"}"#,
    );
    assert_eq!(r.query_field, Some("query"));
    assert_eq!(r.query.as_deref(), Some("q"));
    assert_eq!(
        r.params_digest,
        h(r#"{"input":"i","messages":[{"content":"m","role":"user"}],"prompt":"p"}"#)
    );
    assert_eq!(r.context_digest, h(r#"["query",null,null]"#));
    // A later higher-priority field wins over an earlier array.
    let r = scan(r#"{"prompt":["a"],"query":{"x":1}}"#);
    assert_eq!((r.query_field, r.query.clone()), (Some("query"), None));
    assert_eq!(r.params_digest, h(r#"{"prompt":["a"]}"#));
    assert_eq!(r.context_digest, h(r#"["query",null,{"x":1e0}]"#));
    // Non-string model and non-boolean stream are ordinary parameters.
    let r = scan(r#"{"model":7,"stream":"yes","b":[true]}"#);
    assert_eq!(
        (r.model.clone(), r.stream, r.query_field),
        (None, None, None)
    );
    assert_eq!(
        r.params_digest,
        h(r#"{"b":[true],"model":7e0,"stream":"yes"}"#)
    );
    assert_eq!(r.context_digest, h("[null,null,null]"));
    let r = scan(r#"{"stream":false,"model":"a\"b"}"#);
    assert_eq!((r.model.as_deref(), r.stream), (Some("a\"b"), Some(false)));
    assert_eq!(r.params_digest, h("{}"));
}

#[test]
fn equivalent_spellings_scan_alike() {
    let a = scan(
        r#"{"model":"m","temperature":1,"messages":[{"role":"user","content":"hi"}],"stream":true}"#,
    );
    let b = scan(
        "{ \"stream\" : false , \"messages\" : [ { \"content\" : \"h\\u0069\" , \"role\" : \"\\u0075ser\" } ] ,\n \"temperature\" : 1.0e0, \"model\":\"m\" }",
    );
    assert_eq!(
        (
            &a.query,
            a.model.as_ref(),
            a.params_digest,
            a.context_digest
        ),
        (
            &b.query,
            b.model.as_ref(),
            b.params_digest,
            b.context_digest
        )
    );
    let c = scan(r#"{"model":"m","temperature":1.5,"messages":[{"role":"user","content":"hi"}]}"#);
    assert_ne!(a.params_digest, c.params_digest);
}

#[test]
fn errors_and_offsets() {
    assert_eq!(err(b"  [1]"), (ScanErrorKind::NotObject, 2));
    assert_eq!(err(b"\"s\""), (ScanErrorKind::NotObject, 0));
    assert_eq!(err(b"[1"), (ScanErrorKind::InvalidJson, 2));
    assert_eq!(err(b""), (ScanErrorKind::InvalidJson, 0));
    assert_eq!(err(b"{\"a\":1} x"), (ScanErrorKind::InvalidJson, 8));
    assert_eq!(err(b"{\"a\":1,}"), (ScanErrorKind::InvalidJson, 7));
    assert_eq!(
        err(b"{\"model\":\"x\" \"a\":1}"),
        (ScanErrorKind::InvalidJson, 13)
    );
    assert_eq!(err(b"{\"stream\":tru}"), (ScanErrorKind::InvalidJson, 10));
    assert_eq!(
        err(b"{\"model\":\"\\ud800\"}"),
        (ScanErrorKind::LoneSurrogate, 10)
    );
    assert_eq!(err(b"{\"q\":\"\xc0\"}"), (ScanErrorKind::InvalidUtf8, 6));
    let e =
        scan_request(br#"{"model":"a","x":1,"model":"b"}"#, Limits::default()).expect_err("dup");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::DuplicateKey, 19));
    assert!(e.message.contains("\"model\""), "{}", e.message);
    assert_eq!(
        err(br#"{"messages":[{"role":"user","content":"a","role":"system"}]}"#),
        (ScanErrorKind::DuplicateKey, 42)
    );
    let limits = Limits {
        max_depth: 2,
        max_bytes: 64,
    };
    let e = scan_request(br#"{"a":[{}]}"#, limits).expect_err("deep");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::TooDeep, 6));
    assert!(scan_request(br#"{"a":[1]}"#, limits).is_ok());
    let e = scan_request(&[b' '; 65], limits).expect_err("large");
    assert_eq!((e.kind, e.offset), (ScanErrorKind::TooLarge, 64));
    let zero = Limits {
        max_depth: 0,
        max_bytes: 64,
    };
    assert_eq!(
        scan_request(b"{}", zero).map(|_| ()).map_err(|e| e.kind),
        Err(ScanErrorKind::TooDeep)
    );
}

#[test]
fn empty_object_and_empty_digests() {
    let r = scan(" {} ");
    assert_eq!(
        (r.query, r.query_field, r.model, r.stream),
        (None, None, None, None)
    );
    assert_eq!(r.params_digest, h("{}"));
    assert_eq!(r.context_digest, h("[null,null,null]"));
}

#[test]
fn buffers_kept_between_scans_carry_nothing_over() {
    // Each scan reuses the buffers of the previous one on this thread: a large body, a
    // refused one (which stops mid-parse) and a small one must not leak into each other.
    let small = r#"{"model":"m","b":[1,"x\u00e9"],"messages":[{"role":"user","content":["hi"]}]}"#;
    let first = scan(small);
    let big = format!(
        r#"{{"z":"{}","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "q\\n".repeat(50_000),
        "w\\u00e9".repeat(50_000)
    );
    let big_result = scan(&big);
    assert_eq!(
        err(br#"{"a":[1,2,{"b":"\u00e9\/"#),
        (ScanErrorKind::InvalidJson, 24)
    );
    assert_eq!(scan(small), first);
    assert_eq!(scan(&big), big_result);
    assert_eq!(first.params_digest, h(r#"{"b":[1e0,"xé"]}"#));
}
