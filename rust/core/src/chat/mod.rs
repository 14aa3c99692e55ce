//! `OpenAI` chat-completion streams: assemble `chat.completion.chunk` events into the
//! equivalent `chat.completion` object, and render a stored completion back into the
//! event stream an `OpenAI` server would send for it.
//!
//! JSON goes through `serde_json::Value`: chunk objects are small (a few hundred bytes)
//! and this runs once per stored or replayed response, not per forwarded chunk. Maps
//! are `BTreeMap`s (`preserve_order` is off), so output keys come out sorted; numbers
//! use `float_roundtrip` so logprobs survive unchanged. The exact shapes are written
//! down in `docs/streaming.md`.
//!
//! * `assemble`: chunks to completion;
//! * `render`: completion to chunks;
//! * `access`: typed reads of optional members, with the error each shape gets.

use serde_json::{Map, Value};

mod access;
mod assemble;
mod render;
#[cfg(test)]
mod tests;

pub use assemble::{assemble_body, assemble_events, assemble_tee, not_complete};
pub use render::render;

/// Why a stream or completion could not be assembled or rendered. The string codes
/// ([`ChatErrorKind::code`]) are stable: they are what Python sees as
/// `StreamFormatError.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChatErrorKind {
    /// The stream did not end with `[DONE]` or a `finish_reason` on every choice.
    NotComplete,
    /// The stream holds no `chat.completion.chunk` event.
    NoChunks,
    /// An event's data (or the stored completion) is not JSON.
    NotJson,
    /// A chunk is not shaped like a `chat.completion.chunk`.
    BadChunk,
    /// Chunks of one stream carry different ids.
    MixedIds,
    /// The stored completion is not shaped like a `chat.completion`.
    BadCompletion,
}

impl ChatErrorKind {
    /// The stable short code of this kind.
    pub const fn code(self) -> &'static str {
        match self {
            Self::NotComplete => "not_complete",
            Self::NoChunks => "no_chunks",
            Self::NotJson => "not_json",
            Self::BadChunk => "bad_chunk",
            Self::MixedIds => "mixed_ids",
            Self::BadCompletion => "bad_completion",
        }
    }
}

/// A stream or completion that could not be assembled or rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatError {
    pub kind: ChatErrorKind,
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

fn err(kind: ChatErrorKind, message: impl Into<String>, offset: Option<usize>) -> ChatError {
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

fn function_json(name: String, arguments: String) -> Value {
    let mut f = Map::new();
    f.insert("name".into(), Value::String(name));
    f.insert("arguments".into(), Value::String(arguments));
    Value::Object(f)
}
