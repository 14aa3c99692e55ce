//! The one error type of the request-body scan and canonical JSON.
use std::fmt;

/// Why a body was refused. The string codes ([`ScanErrorKind::code`]) are stable: they
/// are what Python sees as `RequestBodyError.kind` and what logs and metrics count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScanErrorKind {
    /// Not RFC 8259 JSON (syntax, bad escape, control character, number out of range).
    InvalidJson,
    /// The bytes are not UTF-8.
    InvalidUtf8,
    /// A `\uD800`..`\uDFFF` escape that is not half of a surrogate pair.
    LoneSurrogate,
    /// Valid JSON whose top level is not an object (scan only).
    NotObject,
    /// More nested objects/arrays than the depth limit.
    TooDeep,
    /// More bytes than the size limit (checked before parsing).
    TooLarge,
    /// The same key twice in one object (compared after unescaping).
    DuplicateKey,
}

impl ScanErrorKind {
    /// The stable short code of this kind.
    pub const fn code(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::LoneSurrogate => "lone_surrogate",
            Self::NotObject => "not_object",
            Self::TooDeep => "too_deep",
            Self::TooLarge => "too_large",
            Self::DuplicateKey => "duplicate_key",
        }
    }
}

/// A refused body: the kind, the byte offset where the problem was found, and a message
/// that names the offset (and the key, for duplicates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanError {
    pub kind: ScanErrorKind,
    pub offset: usize,
    pub message: String,
}

impl ScanError {
    pub(crate) fn new(kind: ScanErrorKind, offset: usize, what: &str) -> Self {
        Self {
            kind,
            offset,
            message: format!("{what} at byte {offset}"),
        }
    }

    pub(crate) fn json(offset: usize, what: &str) -> Self {
        Self::new(ScanErrorKind::InvalidJson, offset, what)
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScanError {}

/// Bounds applied to every input before and while parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest allowed nesting of objects and arrays (the top-level container is 1).
    pub max_depth: usize,
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
}

/// Default nesting bound.
pub const DEFAULT_MAX_DEPTH: usize = 128;
/// Default size bound: 10 MiB.
pub const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}
