//! Rendering: a stored `chat.completion` written back as the `chat.completion.chunk`
//! events an `OpenAI` server would stream for it.
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::access::Fields;
use super::{ChatError, ChatErrorKind, err, function_json, json_error_offset};

/// Every read of the completion refuses with `bad_completion`.
const C: Fields = Fields::COMPLETION;

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
            .map_err(|e| C.bad(e.to_string()))?;
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
            ChatErrorKind::NotJson,
            format!("completion is not JSON: {e}"),
            Some(offset),
        )
    })?;
    let Value::Object(obj) = &value else {
        return Err(C.bad("completion is not a JSON object".to_owned()));
    };
    if obj.get("object").and_then(Value::as_str) != Some("chat.completion") {
        return Err(C.bad("completion object is not \"chat.completion\"".to_owned()));
    }
    let mut header = Map::new();
    match obj.get("id") {
        Some(Value::String(id)) => header.insert("id".into(), Value::String(id.clone())),
        _ => {
            return Err(C.bad("completion id is missing or not a string".to_owned()));
        }
    };
    header.insert("object".into(), "chat.completion.chunk".into());
    match obj.get("created") {
        Some(v) if v.is_i64() || v.is_u64() => header.insert("created".into(), v.clone()),
        _ => {
            return Err(C.bad("completion created is missing or not an integer".to_owned()));
        }
    };
    match obj.get("model") {
        Some(Value::String(m)) => header.insert("model".into(), Value::String(m.clone())),
        _ => {
            return Err(C.bad("completion model is missing or not a string".to_owned()));
        }
    };
    for key in ["system_fingerprint", "service_tier"] {
        if let Some(s) = C.opt_str(obj, key, "")? {
            header.insert(key.into(), Value::String(s.to_owned()));
        }
    }
    let usage = C.opt_obj(obj, "usage", "")?;
    let Some(Value::Array(choices)) = obj.get("choices") else {
        return Err(C.bad("completion choices is missing or not an array".to_owned()));
    };
    let mut sorted = BTreeMap::new();
    for choice in choices {
        let Value::Object(choice) = choice else {
            return Err(C.bad("completion choices[] entry is not an object".to_owned()));
        };
        let index = C.index(choice, "choices[].")?;
        if sorted.insert(index, choice).is_some() {
            return Err(C.bad(format!("completion choice index {index} repeats")));
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
    let Some(message) = C.opt_obj(choice, "message", path)? else {
        return Err(C.bad("completion choices[].message is missing".to_owned()));
    };
    let finish = C.opt_str(choice, "finish_reason", path)?;
    let logprobs = match C.opt_obj(choice, "logprobs", path)? {
        None => Value::Null,
        Some(lp) => {
            let p = "choices[].logprobs.";
            let mut out = Map::new();
            for key in ["content", "refusal"] {
                let list = C.opt_arr(lp, key, p)?;
                out.insert(
                    key.into(),
                    list.map_or(Value::Null, |l| Value::Array(l.clone())),
                );
            }
            Value::Object(out)
        }
    };
    let path = "choices[].message.";
    let role = C.opt_str(message, "role", path)?.unwrap_or("assistant");
    let content = C.opt_str(message, "content", path)?;
    let refusal = C.opt_str(message, "refusal", path)?;
    let tool_calls = C.opt_arr(message, "tool_calls", path)?;
    let function_call = C.opt_obj(message, "function_call", path)?;

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
            return Err(C.bad(
                "completion choices[].message.tool_calls[] entry is not an object".to_owned(),
            ));
        };
        let p = "choices[].message.tool_calls[].";
        let mut out = one("index", Value::from(position));
        for key in ["id", "type"] {
            if let Some(s) = C.opt_str(call, key, p)? {
                out.insert(key.into(), Value::String(s.to_owned()));
            }
        }
        let f = C.opt_obj(call, "function", p)?;
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
            C.opt_str(f, "name", path)?.unwrap_or(""),
            C.opt_str(f, "arguments", path)?.unwrap_or(""),
        ),
    };
    Ok(function_json(name.to_owned(), arguments.to_owned()))
}
