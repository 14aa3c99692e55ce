//! Typed reads of optional members of chunks and completions: a member must have its
//! type or be null/absent, and a refusal names the member's path and the error kind of
//! what is being read.
use serde_json::{Map, Value};

use super::{ChatError, ChatErrorKind, err};

/// Where members are read from: what the messages call it, the error kind, the offset.
pub(super) struct Fields {
    noun: &'static str,
    kind: ChatErrorKind,
    pub offset: Option<usize>,
}

impl Fields {
    /// A stored completion (no offset: `serde_json` values do not keep one).
    pub const COMPLETION: Self = Self {
        noun: "completion",
        kind: ChatErrorKind::BadCompletion,
        offset: None,
    };

    /// A chunk, from the event at `offset`.
    pub fn chunk(offset: usize) -> Self {
        Self {
            noun: "chunk",
            kind: ChatErrorKind::BadChunk,
            offset: Some(offset),
        }
    }

    /// The refusal of a badly shaped input.
    pub fn bad(&self, message: String) -> ChatError {
        err(self.kind, message, self.offset)
    }

    /// A member that must be a string or null/absent. `path` leads up to the key (as
    /// the messages show it, with its trailing dot).
    pub fn opt_str<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'v str>, ChatError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.not_a(key, path, "a string")),
        }
    }

    /// A member that must be an object or null/absent.
    pub fn opt_obj<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'v Map<String, Value>>, ChatError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(self.not_a(key, path, "an object")),
        }
    }

    /// A member that must be an array or null/absent.
    pub fn opt_arr<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Result<Option<&'v Vec<Value>>, ChatError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(self.not_a(key, path, "an array")),
        }
    }

    /// The `index` member, which must be a non-negative integer.
    pub fn index(&self, obj: &Map<String, Value>, path: &str) -> Result<u64, ChatError> {
        obj.get("index").and_then(Value::as_u64).ok_or_else(|| {
            self.bad(format!(
                "{} {path}index is not a non-negative integer",
                self.noun
            ))
        })
    }

    fn not_a(&self, key: &str, path: &str, what: &str) -> ChatError {
        self.bad(format!("{} {path}{key} is not {what}", self.noun))
    }
}
