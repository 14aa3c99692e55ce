//! Pure-Rust core of fastapi-semcache's native hot path.
//!
//! Nothing here knows about Python: every function takes bytes and returns plain
//! Rust values or a typed error, so it can be tested and benchmarked with `cargo`
//! alone. `rust/bindings` wraps it as the `semanticcache._native` extension.

pub mod chat;
pub mod digest;
mod probe;
pub mod sse;
pub mod tee;
