//! Pure-Rust core of fastapi-semcache's native hot path.
//!
//! Nothing here knows about Python: every function takes bytes and returns plain
//! Rust values or a typed error, so it can be tested and benchmarked with `cargo`
//! alone. `rust/bindings` wraps it as the `semanticcache._native` extension.

pub mod canonical;
pub mod chat;
pub mod digest;
pub mod error;
mod json;
mod probe;
pub mod scan;
pub mod sse;
pub mod tee;

pub use canonical::canonical_json;
pub use error::{DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, Limits, ScanError, ScanErrorKind};
pub use scan::{ScanResult, scan_request};
