//! `OpenAI` chat-completion streams: assemble `chat.completion.chunk` events into the
//! equivalent `chat.completion` object, and render a stored completion back into the
//! event stream an `OpenAI` server would send for it.
//!
//! JSON goes through `serde_json::Value`: chunk objects are small (a few hundred bytes)
//! and this runs once per stored or replayed response, not per forwarded chunk. Maps
//! are `BTreeMap`s (`preserve_order` is off), so output keys come out sorted; numbers
//! use `float_roundtrip` so logprobs survive unchanged. The exact shapes are written
//! down in `docs/streaming.md`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::sse::SseEvent;
use crate::tee::{EndState, SseTracker, StreamTee};

/// Why a stream or completion could not be assembled or rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatError {
    /// Stable short code: `not_complete`, `no_chunks`, `not_json`, `bad_chunk`,
    /// `mixed_ids`, `bad_completion`.
    pub kind: &'static str,
    pub message: String,
    /// Byte offset in the input (event start for chunk errors), when known.
    pub offset: Option<usize>,
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ChatError {}

fn err(kind: &'static str, message: impl Into<String>, offset: Option<usize>) -> ChatError {
    ChatError {
        kind,
        message: message.into(),
        offset,
    }
}

/// Byte offset of a `serde_json` error in `input` (it reports line and column).
fn json_error_offset(input: &[u8], e: &serde_json::Error) -> usize {
    let mut line_start = 0;
    for _ in 1..e.line() {
        match memchr::memchr(b'\n', &input[line_start..]) {
            Some(i) => line_start += i + 1,
            None => break,
        }
    }
    (line_start + e.column().saturating_sub(1)).min(input.len())
}

// --- assembling ------------------------------------------------------------------------

#[derive(Default)]
struct ToolAcc {
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

/// Token lists of a choice's `logprobs`: `(content, refusal)`, `None` until one is seen.
type Logprobs = (Option<Vec<Value>>, Option<Vec<Value>>);

#[derive(Default)]
struct ChoiceAcc {
    role: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    tool_calls: BTreeMap<u64, ToolAcc>,
    function_call: Option<(String, String)>,
    logprobs: Option<Logprobs>,
    finish_reason: Option<String>,
}

/// Checks for one chunk, with the event's offset in every error.
struct Chunk<'a> {
    offset: usize,
    obj: &'a Map<String, Value>,
}

impl Chunk<'_> {
    fn bad(&self, message: String) -> ChatError {
        err("bad_chunk", message, Some(self.offset))
    }

    /// A member that must be a string or null/absent.
    fn opt_str<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'v str>, ChatError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(format!("chunk {path}.{key} is not a string"))),
        }
    }

    /// A member that must be an object or null/absent.
    fn opt_obj<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'v Map<String, Value>>, ChatError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(self.bad(format!("chunk {path}.{key} is not an object"))),
        }
    }

    /// A member that must be an array or null/absent.
    fn opt_arr<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'v Vec<Value>>, ChatError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.bad(format!("chunk {path}.{key} is not an array"))),
        }
    }

    fn index(&self, obj: &Map<String, Value>, path: &str) -> Result<u64, ChatError> {
        obj.get("index")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.bad(format!("chunk {path}.index is not a non-negative integer")))
    }
}

/// The state of an assembly in progress.
#[derive(Default)]
struct Assembler {
    id: Option<String>,
    created: Option<Value>,
    model: Option<String>,
    system_fingerprint: Option<String>,
    service_tier: Option<String>,
    usage: Option<Value>,
    choices: BTreeMap<u64, ChoiceAcc>,
}

impl Assembler {
    fn add(&mut self, c: &Chunk<'_>) -> Result<(), ChatError> {
        let obj = c.obj;
        if obj.get("object").and_then(Value::as_str) != Some("chat.completion.chunk") {
            return Err(c.bad("chunk object is not \"chat.completion.chunk\"".to_owned()));
        }
        let Some(Value::String(id)) = obj.get("id") else {
            return Err(c.bad("chunk id is missing or not a string".to_owned()));
        };
        match &self.id {
            None => {
                let created = obj.get("created").filter(|v| v.is_i64() || v.is_u64());
                let Some(created) = created else {
                    return Err(c.bad("chunk created is missing or not an integer".to_owned()));
                };
                let Some(model) = obj.get("model").and_then(Value::as_str) else {
                    return Err(c.bad("chunk model is missing or not a string".to_owned()));
                };
                self.id = Some(id.clone());
                self.created = Some(created.clone());
                self.model = Some(model.to_owned());
            }
            Some(first) if first != id => {
                return Err(err(
                    "mixed_ids",
                    format!("chunk id {id:?} differs from the first chunk's id {first:?}"),
                    Some(c.offset),
                ));
            }
            Some(_) => {}
        }
        if let Some(fp) = c.opt_str(obj, "system_fingerprint", "")? {
            self.system_fingerprint.get_or_insert_with(|| fp.to_owned());
        }
        if let Some(tier) = c.opt_str(obj, "service_tier", "")? {
            self.service_tier.get_or_insert_with(|| tier.to_owned());
        }
        if let Some(usage) = c.opt_obj(obj, "usage", "")? {
            self.usage = Some(Value::Object(usage.clone()));
        }
        let Some(Value::Array(choices)) = obj.get("choices") else {
            return Err(c.bad("chunk choices is missing or not an array".to_owned()));
        };
        for choice in choices {
            let Value::Object(choice) = choice else {
                return Err(c.bad("chunk choices[] entry is not an object".to_owned()));
            };
            let index = c.index(choice, "choices[]")?;
            let acc = self.choices.entry(index).or_default();
            Self::add_choice(c, choice, acc)?;
        }
        Ok(())
    }

    fn add_choice(
        c: &Chunk<'_>,
        choice: &Map<String, Value>,
        acc: &mut ChoiceAcc,
    ) -> Result<(), ChatError> {
        if let Some(reason) = c.opt_str(choice, "finish_reason", "choices[]")? {
            acc.finish_reason = Some(reason.to_owned());
        }
        if let Some(lp) = c.opt_obj(choice, "logprobs", "choices[]")? {
            let (content, refusal) = acc.logprobs.get_or_insert((None, None));
            if let Some(list) = c.opt_arr(lp, "content", "choices[].logprobs")? {
                content
                    .get_or_insert_with(Vec::new)
                    .extend(list.iter().cloned());
            }
            if let Some(list) = c.opt_arr(lp, "refusal", "choices[].logprobs")? {
                refusal
                    .get_or_insert_with(Vec::new)
                    .extend(list.iter().cloned());
            }
        }
        let Some(delta) = c.opt_obj(choice, "delta", "choices[]")? else {
            return Ok(());
        };
        let path = "choices[].delta";
        if let Some(role) = c.opt_str(delta, "role", path)? {
            acc.role.get_or_insert_with(|| role.to_owned());
        }
        if let Some(text) = c.opt_str(delta, "content", path)? {
            acc.content.get_or_insert_with(String::new).push_str(text);
        }
        if let Some(text) = c.opt_str(delta, "refusal", path)? {
            acc.refusal.get_or_insert_with(String::new).push_str(text);
        }
        if let Some(fc) = c.opt_obj(delta, "function_call", path)? {
            let (name, args) = acc.function_call.get_or_insert_with(Default::default);
            name.push_str(
                c.opt_str(fc, "name", "choices[].delta.function_call")?
                    .unwrap_or(""),
            );
            args.push_str(
                c.opt_str(fc, "arguments", "choices[].delta.function_call")?
                    .unwrap_or(""),
            );
        }
        for call in c.opt_arr(delta, "tool_calls", path)?.into_iter().flatten() {
            let Value::Object(call) = call else {
                return Err(
                    c.bad("chunk choices[].delta.tool_calls[] entry is not an object".to_owned())
                );
            };
            let path = "choices[].delta.tool_calls[]";
            let tool = acc.tool_calls.entry(c.index(call, path)?).or_default();
            // Providers repeat id and type in later deltas, or not: the first one counts.
            if let Some(id) = c.opt_str(call, "id", path)? {
                tool.id.get_or_insert_with(|| id.to_owned());
            }
            if let Some(kind) = c.opt_str(call, "type", path)? {
                tool.kind.get_or_insert_with(|| kind.to_owned());
            }
            if let Some(f) = c.opt_obj(call, "function", path)? {
                let path = "choices[].delta.tool_calls[].function";
                tool.name
                    .push_str(c.opt_str(f, "name", path)?.unwrap_or(""));
                tool.arguments
                    .push_str(c.opt_str(f, "arguments", path)?.unwrap_or(""));
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>, ChatError> {
        let (Some(id), Some(created), Some(model)) = (self.id, self.created, self.model) else {
            return Err(err(
                "no_chunks",
                "the stream holds no chat.completion.chunk event",
                None,
            ));
        };
        let mut out = Map::new();
        out.insert("id".into(), Value::String(id));
        out.insert("object".into(), "chat.completion".into());
        out.insert("created".into(), created);
        out.insert("model".into(), Value::String(model));
        if let Some(fp) = self.system_fingerprint {
            out.insert("system_fingerprint".into(), Value::String(fp));
        }
        if let Some(tier) = self.service_tier {
            out.insert("service_tier".into(), Value::String(tier));
        }
        let choices = self
            .choices
            .into_iter()
            .map(|(index, acc)| choice_json(index, acc))
            .collect();
        out.insert("choices".into(), Value::Array(choices));
        if let Some(usage) = self.usage {
            out.insert("usage".into(), usage);
        }
        serde_json::to_vec(&Value::Object(out)).map_err(|e| err("bad_chunk", e.to_string(), None))
    }
}

fn opt_string(s: Option<String>) -> Value {
    s.map_or(Value::Null, Value::String)
}

fn choice_json(index: u64, acc: ChoiceAcc) -> Value {
    let mut message = Map::new();
    message.insert(
        "role".into(),
        Value::String(acc.role.unwrap_or_else(|| "assistant".to_owned())),
    );
    message.insert("content".into(), opt_string(acc.content));
    if let Some(refusal) = acc.refusal {
        message.insert("refusal".into(), Value::String(refusal));
    }
    if !acc.tool_calls.is_empty() {
        let calls = acc
            .tool_calls
            .into_values()
            .map(|t| {
                let mut call = Map::new();
                if let Some(id) = t.id {
                    call.insert("id".into(), Value::String(id));
                }
                if let Some(kind) = t.kind {
                    call.insert("type".into(), Value::String(kind));
                }
                call.insert("function".into(), function_json(t.name, t.arguments));
                Value::Object(call)
            })
            .collect();
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some((name, arguments)) = acc.function_call {
        message.insert("function_call".into(), function_json(name, arguments));
    }
    let logprobs = acc.logprobs.map_or(Value::Null, |(content, refusal)| {
        let mut lp = Map::new();
        lp.insert("content".into(), content.map_or(Value::Null, Value::Array));
        lp.insert("refusal".into(), refusal.map_or(Value::Null, Value::Array));
        Value::Object(lp)
    });
    let mut choice = Map::new();
    choice.insert("index".into(), index.into());
    choice.insert("message".into(), Value::Object(message));
    choice.insert("logprobs".into(), logprobs);
    choice.insert("finish_reason".into(), opt_string(acc.finish_reason));
    Value::Object(choice)
}

fn function_json(name: String, arguments: String) -> Value {
    let mut f = Map::new();
    f.insert("name".into(), Value::String(name));
    f.insert("arguments".into(), Value::String(arguments));
    Value::Object(f)
}

/// Assemble dispatched events (the stream must already be known complete).
///
/// Only `message` events count, up to `data: [DONE]`; other event types are skipped.
pub fn assemble_events(events: &[SseEvent]) -> Result<Vec<u8>, ChatError> {
    let mut asm = Assembler::default();
    for ev in events {
        if ev.event != "message" {
            continue;
        }
        if ev.data == "[DONE]" {
            break;
        }
        let value: Value = serde_json::from_str(&ev.data).map_err(|e| {
            err(
                "not_json",
                format!("event data at byte {} is not JSON: {e}", ev.offset),
                Some(ev.offset),
            )
        })?;
        let Value::Object(obj) = &value else {
            return Err(err(
                "bad_chunk",
                format!("event data at byte {} is not a JSON object", ev.offset),
                Some(ev.offset),
            ));
        };
        asm.add(&Chunk {
            offset: ev.offset,
            obj,
        })?;
    }
    asm.finish()
}

/// The error for a stream that did not end cleanly.
pub fn not_complete(state: EndState) -> ChatError {
    err(
        "not_complete",
        format!(
            "the stream is not complete (end state {:?}): only a stream that ended with \
             [DONE] or a finish_reason on every choice can be assembled",
            state.as_str()
        ),
        None,
    )
}

/// Assemble a whole SSE body; it must end cleanly (`[DONE]` or every choice finished).
pub fn assemble_body(body: &[u8]) -> Result<Vec<u8>, ChatError> {
    let mut tracker = SseTracker::new();
    tracker.feed(body);
    match tracker.closed_state() {
        EndState::Done | EndState::Finished => assemble_events(tracker.events()),
        state => Err(not_complete(state)),
    }
}

/// Assemble what a tee copied; the tee must be closed and complete.
pub fn assemble_tee(tee: &StreamTee) -> Result<Vec<u8>, ChatError> {
    if tee.complete() {
        assemble_events(tee.events())
    } else {
        Err(not_complete(tee.end_state()))
    }
}

// --- rendering -------------------------------------------------------------------------

fn bad_completion(message: String) -> ChatError {
    err("bad_completion", message, None)
}

fn get_opt_str<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v str>, ChatError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad_completion(format!(
            "completion {path}{key} is not a string"
        ))),
    }
}

fn get_opt_obj<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v Map<String, Value>>, ChatError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(bad_completion(format!(
            "completion {path}{key} is not an object"
        ))),
    }
}

fn get_opt_arr<'v>(
    obj: &'v Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'v Vec<Value>>, ChatError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(bad_completion(format!(
            "completion {path}{key} is not an array"
        ))),
    }
}

/// Writes `data: <chunk>\n\n` events sharing the completion's header fields.
struct Renderer {
    header: Map<String, Value>,
    out: Vec<u8>,
}

impl Renderer {
    fn emit(&mut self, choices: Vec<Value>, usage: Option<&Value>) -> Result<(), ChatError> {
        let mut chunk = self.header.clone();
        chunk.insert("choices".into(), Value::Array(choices));
        if let Some(usage) = usage {
            chunk.insert("usage".into(), usage.clone());
        }
        self.out.extend_from_slice(b"data: ");
        // Compact JSON escapes CR and LF inside strings, so a chunk is always one line.
        serde_json::to_writer(&mut self.out, &Value::Object(chunk))
            .map_err(|e| bad_completion(e.to_string()))?;
        self.out.extend_from_slice(b"\n\n");
        Ok(())
    }

    fn delta(
        &mut self,
        index: u64,
        delta: Map<String, Value>,
        logprobs: Value,
        finish: Value,
    ) -> Result<(), ChatError> {
        let mut choice = Map::new();
        choice.insert("index".into(), index.into());
        choice.insert("delta".into(), Value::Object(delta));
        choice.insert("logprobs".into(), logprobs);
        choice.insert("finish_reason".into(), finish);
        self.emit(vec![Value::Object(choice)], None)
    }
}

fn one(key: &str, value: Value) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.into(), value);
    m
}

/// Render a stored `chat.completion` as the SSE body an `OpenAI` server would stream.
///
/// Per choice, in index order: a first delta with the role and `content: ""` (or
/// `null` when the message content is null), the whole content in one delta, one delta
/// per tool call (id, type, name and arguments together), the legacy `function_call`,
/// the refusal, then an empty delta with the `finish_reason`. The choice's `logprobs` ride
/// on the content delta (or the first delta when there is no content). With
/// `include_usage`, a `choices: []` chunk carries the usage (a completion with neither
/// choices nor usage gets one empty `choices: []` chunk). Then `data: [DONE]`.
pub fn render(completion: &[u8], include_usage: bool) -> Result<Vec<u8>, ChatError> {
    let value: Value = serde_json::from_slice(completion).map_err(|e| {
        let offset = json_error_offset(completion, &e);
        err(
            "not_json",
            format!("completion is not JSON: {e}"),
            Some(offset),
        )
    })?;
    let Value::Object(obj) = &value else {
        return Err(bad_completion("completion is not a JSON object".to_owned()));
    };
    if obj.get("object").and_then(Value::as_str) != Some("chat.completion") {
        return Err(bad_completion(
            "completion object is not \"chat.completion\"".to_owned(),
        ));
    }
    let mut header = Map::new();
    match obj.get("id") {
        Some(Value::String(id)) => header.insert("id".into(), Value::String(id.clone())),
        _ => {
            return Err(bad_completion(
                "completion id is missing or not a string".to_owned(),
            ));
        }
    };
    header.insert("object".into(), "chat.completion.chunk".into());
    match obj.get("created") {
        Some(v) if v.is_i64() || v.is_u64() => header.insert("created".into(), v.clone()),
        _ => {
            return Err(bad_completion(
                "completion created is missing or not an integer".to_owned(),
            ));
        }
    };
    match obj.get("model") {
        Some(Value::String(m)) => header.insert("model".into(), Value::String(m.clone())),
        _ => {
            return Err(bad_completion(
                "completion model is missing or not a string".to_owned(),
            ));
        }
    };
    for key in ["system_fingerprint", "service_tier"] {
        if let Some(s) = get_opt_str(obj, key, "")? {
            header.insert(key.into(), Value::String(s.to_owned()));
        }
    }
    let usage = get_opt_obj(obj, "usage", "")?;
    let Some(Value::Array(choices)) = obj.get("choices") else {
        return Err(bad_completion(
            "completion choices is missing or not an array".to_owned(),
        ));
    };
    let mut sorted = BTreeMap::new();
    for choice in choices {
        let Value::Object(choice) = choice else {
            return Err(bad_completion(
                "completion choices[] entry is not an object".to_owned(),
            ));
        };
        let Some(index) = choice.get("index").and_then(Value::as_u64) else {
            return Err(bad_completion(
                "completion choices[].index is not a non-negative integer".to_owned(),
            ));
        };
        if sorted.insert(index, choice).is_some() {
            return Err(bad_completion(format!(
                "completion choice index {index} repeats"
            )));
        }
    }
    let mut r = Renderer {
        header,
        out: Vec::with_capacity(completion.len() * 2 + 64),
    };
    for (index, choice) in sorted {
        render_choice(&mut r, index, choice)?;
    }
    if include_usage && let Some(usage) = usage {
        r.emit(Vec::new(), Some(&Value::Object(usage.clone())))?;
    } else if r.out.is_empty() {
        // No choices: one empty chunk still carries id, created and model, so the
        // stream assembles back to the same completion.
        r.emit(Vec::new(), None)?;
    }
    r.out.extend_from_slice(b"data: [DONE]\n\n");
    Ok(r.out)
}

fn render_choice(
    r: &mut Renderer,
    index: u64,
    choice: &Map<String, Value>,
) -> Result<(), ChatError> {
    let path = "choices[].";
    let Some(message) = get_opt_obj(choice, "message", path)? else {
        return Err(bad_completion(
            "completion choices[].message is missing".to_owned(),
        ));
    };
    let finish = get_opt_str(choice, "finish_reason", path)?;
    let logprobs = match get_opt_obj(choice, "logprobs", path)? {
        None => Value::Null,
        Some(lp) => {
            let p = "choices[].logprobs.";
            let mut out = Map::new();
            for key in ["content", "refusal"] {
                let list = get_opt_arr(lp, key, p)?;
                out.insert(
                    key.into(),
                    list.map_or(Value::Null, |l| Value::Array(l.clone())),
                );
            }
            Value::Object(out)
        }
    };
    let path = "choices[].message.";
    let role = get_opt_str(message, "role", path)?.unwrap_or("assistant");
    let content = get_opt_str(message, "content", path)?;
    let refusal = get_opt_str(message, "refusal", path)?;
    let tool_calls = get_opt_arr(message, "tool_calls", path)?;
    let function_call = get_opt_obj(message, "function_call", path)?;

    let has_content_delta = content.is_some_and(|c| !c.is_empty());
    let mut first = one("role", Value::String(role.to_owned()));
    first.insert(
        "content".into(),
        content.map_or(Value::Null, |_| Value::String(String::new())),
    );
    let first_logprobs = if has_content_delta {
        Value::Null
    } else {
        logprobs.clone()
    };
    r.delta(index, first, first_logprobs, Value::Null)?;
    if let Some(text) = content.filter(|c| !c.is_empty()) {
        r.delta(
            index,
            one("content", Value::String(text.to_owned())),
            logprobs,
            Value::Null,
        )?;
    }
    for (position, call) in tool_calls.into_iter().flatten().enumerate() {
        let Value::Object(call) = call else {
            return Err(bad_completion(
                "completion choices[].message.tool_calls[] entry is not an object".to_owned(),
            ));
        };
        let p = "choices[].message.tool_calls[].";
        let mut out = one("index", Value::from(position));
        for key in ["id", "type"] {
            if let Some(s) = get_opt_str(call, key, p)? {
                out.insert(key.into(), Value::String(s.to_owned()));
            }
        }
        let f = get_opt_obj(call, "function", p)?;
        out.insert(
            "function".into(),
            function_value(f, "choices[].message.tool_calls[].function.")?,
        );
        r.delta(
            index,
            one("tool_calls", Value::Array(vec![Value::Object(out)])),
            Value::Null,
            Value::Null,
        )?;
    }
    if let Some(fc) = function_call {
        let f = function_value(Some(fc), "choices[].message.function_call.")?;
        r.delta(index, one("function_call", f), Value::Null, Value::Null)?;
    }
    if let Some(text) = refusal {
        r.delta(
            index,
            one("refusal", Value::String(text.to_owned())),
            Value::Null,
            Value::Null,
        )?;
    }
    r.delta(
        index,
        Map::new(),
        Value::Null,
        finish.map_or(Value::Null, |f| Value::String(f.to_owned())),
    )
}

fn function_value(f: Option<&Map<String, Value>>, path: &str) -> Result<Value, ChatError> {
    let (name, arguments) = match f {
        None => ("", ""),
        Some(f) => (
            get_opt_str(f, "name", path)?.unwrap_or(""),
            get_opt_str(f, "arguments", path)?.unwrap_or(""),
        ),
    };
    Ok(function_json(name.to_owned(), arguments.to_owned()))
}

#[cfg(test)]
mod tests {
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
        r.unwrap_err().kind
    }

    #[test]
    fn assemble_errors() {
        assert_eq!(kind(assemble_body(b"data: {}\n\n")), "not_complete");
        assert_eq!(kind(assemble_body(b"data: [DONE]\n\n")), "no_chunks");
        let e = assemble_body(b": c\ndata: {nope\n\ndata: [DONE]\n\n").unwrap_err();
        assert_eq!((e.kind, e.offset), ("not_json", Some(4)));
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
        assert_eq!(e.kind, "not_json");
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
}
