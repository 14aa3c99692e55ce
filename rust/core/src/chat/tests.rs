//! Unit tests of assembling and rendering.
use super::*;

fn v(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

const STREAM: &[u8] = r#"data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}

data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":1,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]},"finish_reason":null}]}

data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}

data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"lo ✓"},"finish_reason":"stop"}]}

data: {"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}

data: [DONE]

"#.as_bytes();

fn expected() -> Value {
    v(r#"{"id":"c1","object":"chat.completion","created":7,"model":"m","system_fingerprint":"fp",
        "choices":[
          {"index":0,"message":{"role":"assistant","content":"Hello ✓"},"logprobs":null,"finish_reason":"stop"},
          {"index":1,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],
        "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#.as_bytes())
}

#[test]
fn assembles_text_tools_and_usage() {
    assert_eq!(v(&assemble_body(STREAM).unwrap()), expected());
}

#[test]
fn render_then_assemble_round_trips() {
    let completion = assemble_body(STREAM).unwrap();
    let sse = render(&completion, true).unwrap();
    assert!(sse.ends_with(b"data: [DONE]\n\n"));
    assert_eq!(v(&assemble_body(&sse).unwrap()), expected());
    // Without usage the usage chunk is left out.
    let sse = render(&completion, false).unwrap();
    let mut want = expected();
    want.as_object_mut().unwrap().remove("usage");
    assert_eq!(v(&assemble_body(&sse).unwrap()), want);
}

#[test]
fn render_shape() {
    let sse = render(
        br#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"logprobs":null,"finish_reason":"stop"}]}"#,
        false,
    )
    .unwrap();
    let events = crate::sse::parse(&sse);
    let data: Vec<Value> = events[..3].iter().map(|e| v(e.data.as_bytes())).collect();
    assert_eq!(
        data[0]["choices"][0]["delta"],
        v(br#"{"role":"assistant","content":""}"#)
    );
    assert_eq!(data[1]["choices"][0]["delta"], v(br#"{"content":"hi"}"#));
    assert_eq!(data[2]["choices"][0]["delta"], v(b"{}"));
    assert_eq!(data[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(data[0]["object"], "chat.completion.chunk");
    assert_eq!(events[3].data, "[DONE]");
    assert_eq!(events.len(), 4);
}

#[test]
fn logprobs_concatenate_and_round_trip() {
    let chunk = |lp: &str, content: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"i\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{content}\"}},\"logprobs\":{lp},\"finish_reason\":{finish}}}]}}\n\n"
        )
    };
    let body = [
        chunk(
            r#"{"content":[{"token":"a","logprob":-0.5}],"refusal":null}"#,
            "a",
            "null",
        ),
        chunk(
            r#"{"content":[{"token":"b","logprob":-1.25e-7}]}"#,
            "b",
            "\"stop\"",
        ),
    ]
    .concat();
    let got = v(&assemble_body(body.as_bytes()).unwrap());
    assert_eq!(
        got["choices"][0]["logprobs"],
        v(br#"{"content":[{"token":"a","logprob":-0.5},{"token":"b","logprob":-1.25e-7}],"refusal":null}"#)
    );
    let again =
        v(&assemble_body(&render(&serde_json::to_vec(&got).unwrap(), true).unwrap()).unwrap());
    assert_eq!(again, got);
}

fn kind(r: Result<Vec<u8>, ChatError>) -> &'static str {
    r.unwrap_err().kind.code()
}

#[test]
fn assemble_errors() {
    assert_eq!(kind(assemble_body(b"data: {}\n\n")), "not_complete");
    assert_eq!(kind(assemble_body(b"data: [DONE]\n\n")), "no_chunks");
    let e = assemble_body(b": c\ndata: {nope\n\ndata: [DONE]\n\n").unwrap_err();
    assert_eq!((e.kind.code(), e.offset), ("not_json", Some(4)));
    assert_eq!(
        kind(assemble_body(b"data: [1]\n\ndata: [DONE]\n\n")),
        "bad_chunk"
    );
    assert_eq!(
        kind(assemble_body(
            b"data: {\"object\":\"x\"}\n\ndata: [DONE]\n\n"
        )),
        "bad_chunk"
    );
    let c = |id: &str| {
        format!(
            "data: {{\"id\":\"{id}\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[]}}\n\n"
        )
    };
    let body = [c("a"), c("b"), "data: [DONE]\n\n".to_owned()].concat();
    assert_eq!(kind(assemble_body(body.as_bytes())), "mixed_ids");
    let body = "data: {\"id\":\"a\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":5}}]}\n\ndata: [DONE]\n\n";
    assert_eq!(kind(assemble_body(body.as_bytes())), "bad_chunk");
    assert_eq!(
        kind(assemble_body(b"event: error\ndata: {}\n\n")),
        "not_complete"
    );
}

#[test]
fn render_errors() {
    let e = render(b"{\n  \"a\": nope}", false).unwrap_err();
    // serde_json reports where it gave up: on or just after the bad token.
    assert_eq!(e.kind.code(), "not_json");
    assert!(e.offset.is_some_and(|o| (9..=10).contains(&o)), "{e:?}");
    assert_eq!(kind(render(b"[]", false)), "bad_completion");
    assert_eq!(
        kind(render(br#"{"object":"chat.completion"}"#, false)),
        "bad_completion"
    );
    let base = r#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":CH}"#;
    for ch in [
        "{}",
        "[1]",
        r#"[{"index":-1,"message":{}}]"#,
        r#"[{"index":0}]"#,
        r#"[{"index":0,"message":{"content":[1]}}]"#,
        r#"[{"index":0,"message":{}},{"index":0,"message":{}}]"#,
        r#"[{"index":0,"message":{"tool_calls":[1]}}]"#,
    ] {
        assert_eq!(
            kind(render(base.replace("CH", ch).as_bytes(), false)),
            "bad_completion",
            "{ch}"
        );
    }
}

#[test]
fn events_of_other_types_are_skipped() {
    let body = [&b"event: ping\ndata: hello\n\n"[..], STREAM].concat();
    assert_eq!(v(&assemble_body(&body).unwrap()), expected());
}
