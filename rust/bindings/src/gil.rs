//! The one rule for releasing the GIL around native work.
use pyo3::prelude::*;

/// Inputs above this many bytes are processed with the GIL released: below it,
/// releasing and re-taking the GIL costs more than the work.
pub const DETACH_ABOVE: usize = 64 * 1024;

/// Runs `f`, without the GIL when `len` (the input's size in bytes) is above
/// [`DETACH_ABOVE`].
pub fn detach_if_large<T: Send>(py: Python<'_>, len: usize, f: impl FnOnce() -> T + Send) -> T {
    if len > DETACH_ABOVE {
        py.detach(f)
    } else {
        f()
    }
}
