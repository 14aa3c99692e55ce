//! `hmac_sha256` / `hmac_sha256_hex`: keyed digests for log fields.
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::gil::detach_if_large;

/// `bytes` as is, `str` as UTF-8 (a lone surrogate raises `UnicodeEncodeError`, as
/// `str.encode()` would).
fn data_bytes<'a>(data: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    if let Ok(b) = data.cast::<PyBytes>() {
        Ok(b.as_bytes())
    } else if let Ok(s) = data.cast::<PyString>() {
        Ok(s.to_str()?.as_bytes())
    } else {
        Err(PyTypeError::new_err(format!(
            "data must be bytes or str, not {}",
            data.get_type().name()?
        )))
    }
}

fn digest(py: Python<'_>, key: &[u8], data: &[u8]) -> [u8; 32] {
    detach_if_large(py, data.len() + key.len(), || {
        semcache_core::digest::hmac_sha256(key, data)
    })
}

/// HMAC-SHA256 of `data` (`str` is encoded as UTF-8) under `key`.
#[pyfunction]
pub fn hmac_sha256<'py>(
    py: Python<'py>,
    key: &[u8],
    data: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let data = data_bytes(data)?;
    Ok(PyBytes::new(py, &digest(py, key, data)))
}

/// Lowercase hex HMAC-SHA256, cut to `length` hex digits (1..64).
#[pyfunction]
#[pyo3(signature = (key, data, length = 64))]
pub fn hmac_sha256_hex(
    py: Python<'_>,
    key: &[u8],
    data: &Bound<'_, PyAny>,
    length: i64,
) -> PyResult<String> {
    let data = data_bytes(data)?;
    let n = usize::try_from(length)
        .ok()
        .filter(|n| (1..=semcache_core::digest::HEX_LEN).contains(n))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "length must be between 1 and 64 hex digits, got {length}"
            ))
        })?;
    let full = digest(py, key, data);
    // The length is already checked, so this cannot fail; map anyway rather than panic.
    semcache_core::digest::hmac_sha256_hex_of_digest(&full, n)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}
