//! Assembling: `chat.completion.chunk` events folded into the `chat.completion` they
//! stream, choice by choice, tool call by tool call.
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::access::Fields;
use super::{ChatError, ChatErrorKind, err, function_json};
use crate::sse::SseEvent;
use crate::tee::{EndState, SseTracker, StreamTee};

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
    fn add(&mut self, c: &Fields, obj: &Map<String, Value>) -> Result<(), ChatError> {
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
                    ChatErrorKind::MixedIds,
                    format!("chunk id {id:?} differs from the first chunk's id {first:?}"),
                    c.offset,
                ));
            }
            Some(_) => {}
        }
        if let Some(fp) = c.opt_str(obj, "system_fingerprint", ".")? {
            self.system_fingerprint.get_or_insert_with(|| fp.to_owned());
        }
        if let Some(tier) = c.opt_str(obj, "service_tier", ".")? {
            self.service_tier.get_or_insert_with(|| tier.to_owned());
        }
        if let Some(usage) = c.opt_obj(obj, "usage", ".")? {
            self.usage = Some(Value::Object(usage.clone()));
        }
        let Some(Value::Array(choices)) = obj.get("choices") else {
            return Err(c.bad("chunk choices is missing or not an array".to_owned()));
        };
        for choice in choices {
            let Value::Object(choice) = choice else {
                return Err(c.bad("chunk choices[] entry is not an object".to_owned()));
            };
            let index = c.index(choice, "choices[].")?;
            let acc = self.choices.entry(index).or_default();
            Self::add_choice(c, choice, acc)?;
        }
        Ok(())
    }

    fn add_choice(
        c: &Fields,
        choice: &Map<String, Value>,
        acc: &mut ChoiceAcc,
    ) -> Result<(), ChatError> {
        if let Some(reason) = c.opt_str(choice, "finish_reason", "choices[].")? {
            acc.finish_reason = Some(reason.to_owned());
        }
        if let Some(lp) = c.opt_obj(choice, "logprobs", "choices[].")? {
            let (content, refusal) = acc.logprobs.get_or_insert((None, None));
            if let Some(list) = c.opt_arr(lp, "content", "choices[].logprobs.")? {
                content
                    .get_or_insert_with(Vec::new)
                    .extend(list.iter().cloned());
            }
            if let Some(list) = c.opt_arr(lp, "refusal", "choices[].logprobs.")? {
                refusal
                    .get_or_insert_with(Vec::new)
                    .extend(list.iter().cloned());
            }
        }
        let Some(delta) = c.opt_obj(choice, "delta", "choices[].")? else {
            return Ok(());
        };
        let path = "choices[].delta.";
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
                c.opt_str(fc, "name", "choices[].delta.function_call.")?
                    .unwrap_or(""),
            );
            args.push_str(
                c.opt_str(fc, "arguments", "choices[].delta.function_call.")?
                    .unwrap_or(""),
            );
        }
        for call in c.opt_arr(delta, "tool_calls", path)?.into_iter().flatten() {
            let Value::Object(call) = call else {
                return Err(
                    c.bad("chunk choices[].delta.tool_calls[] entry is not an object".to_owned())
                );
            };
            let path = "choices[].delta.tool_calls[].";
            let tool = acc.tool_calls.entry(c.index(call, path)?).or_default();
            // Providers repeat id and type in later deltas, or not: the first one counts.
            if let Some(id) = c.opt_str(call, "id", path)? {
                tool.id.get_or_insert_with(|| id.to_owned());
            }
            if let Some(kind) = c.opt_str(call, "type", path)? {
                tool.kind.get_or_insert_with(|| kind.to_owned());
            }
            if let Some(f) = c.opt_obj(call, "function", path)? {
                let path = "choices[].delta.tool_calls[].function.";
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
                ChatErrorKind::NoChunks,
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
        serde_json::to_vec(&Value::Object(out))
            .map_err(|e| err(ChatErrorKind::BadChunk, e.to_string(), None))
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
                ChatErrorKind::NotJson,
                format!("event data at byte {} is not JSON: {e}", ev.offset),
                Some(ev.offset),
            )
        })?;
        let Value::Object(obj) = &value else {
            return Err(err(
                ChatErrorKind::BadChunk,
                format!("event data at byte {} is not a JSON object", ev.offset),
                Some(ev.offset),
            ));
        };
        asm.add(&Fields::chunk(ev.offset), obj)?;
    }
    asm.finish()
}

/// The error for a stream that did not end cleanly.
pub fn not_complete(state: EndState) -> ChatError {
    err(
        ChatErrorKind::NotComplete,
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
