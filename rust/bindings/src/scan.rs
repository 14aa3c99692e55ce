//! `scan_request`, `ScanResult`, `canonical_json`: type conversion, argument checks,
//! error mapping and GIL release around `semcache_core::scan`.
use std::sync::OnceLock;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyList};
use semcache_core::{DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, Limits, ScanError};

use crate::errors::{ErrorClass, native_error};
use crate::gil::detach_if_large;

fn to_py_err(py: Python<'_>, e: &ScanError) -> PyErr {
    native_error(
        py,
        ErrorClass::RequestBody,
        &e.message,
        e.kind.code(),
        Some(e.offset),
    )
}

/// A positive limit; an int too large for the platform means "no limit".
fn limit(value: Option<&Bound<'_, PyAny>>, name: &str, default: usize) -> PyResult<usize> {
    let Some(obj) = value else {
        return Ok(default);
    };
    if !obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int, not {}",
            obj.get_type().name()?
        )));
    }
    match obj.extract::<usize>() {
        Ok(v) if v >= 1 => Ok(v),
        _ if obj.gt(0)? => Ok(usize::MAX),
        _ => Err(PyValueError::new_err(format!(
            "{name} must be a positive integer, got {}",
            obj.repr()?
        ))),
    }
}

fn limits(
    max_depth: Option<&Bound<'_, PyAny>>,
    max_bytes: Option<&Bound<'_, PyAny>>,
) -> PyResult<Limits> {
    Ok(Limits {
        max_depth: limit(max_depth, "max_depth", DEFAULT_MAX_DEPTH)?,
        max_bytes: limit(max_bytes, "max_bytes", DEFAULT_MAX_BYTES)?,
    })
}

/// What the cache needs from one JSON request body, found in one pass.
#[pyclass(frozen, module = "semanticcache._native", name = "ScanResult")]
pub struct ScanResult {
    inner: semcache_core::ScanResult,
    /// The scanned body: `turns` re-reads it on first access (the result keeps offsets).
    body: Py<PyBytes>,
    turns: OnceLock<Vec<(String, String)>>,
}

#[pymethods]
impl ScanResult {
    #[getter]
    fn query(&self) -> Option<&str> {
        self.inner.query.as_deref()
    }

    #[getter]
    fn query_field(&self) -> Option<&'static str> {
        self.inner.query_field
    }

    #[getter]
    fn model(&self) -> Option<&str> {
        self.inner.model.as_deref()
    }

    #[getter]
    fn stream(&self) -> Option<bool> {
        self.inner.stream
    }

    #[getter]
    fn params_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.params_digest)
    }

    #[getter]
    fn context_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.context_digest)
    }

    #[getter]
    fn turns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let turns = self
            .turns
            .get_or_init(|| self.inner.turns(self.body.bind(py).as_bytes()));
        PyList::new(py, turns.iter().map(|(r, t)| (r.as_str(), t.as_str())))
    }

    fn __repr__(&self) -> String {
        fn show(v: Option<&str>) -> String {
            v.map_or_else(|| "None".to_owned(), |s| format!("{s:?}"))
        }
        let stream = match self.inner.stream {
            Some(true) => "True",
            Some(false) => "False",
            None => "None",
        };
        format!(
            "ScanResult(query_field={}, model={}, stream={stream}, query_chars={})",
            show(self.inner.query_field),
            show(self.inner.model.as_deref()),
            self.inner
                .query
                .as_ref()
                .map_or_else(|| "None".to_owned(), |q| q.chars().count().to_string()),
        )
    }
}

/// Scan a JSON request body in one pass.
#[pyfunction]
// `None` stands for the default so that any int can be checked (and refused with a
// `ValueError`) here; the text signature shows the real defaults.
#[pyo3(
    signature = (body, *, max_depth = None, max_bytes = None),
    text_signature = "(body, *, max_depth=128, max_bytes=10485760)"
)]
pub fn scan_request(
    py: Python<'_>,
    body: Bound<'_, PyBytes>,
    max_depth: Option<&Bound<'_, PyAny>>,
    max_bytes: Option<&Bound<'_, PyAny>>,
) -> PyResult<ScanResult> {
    let limits = limits(max_depth, max_bytes)?;
    let bytes = body.as_bytes();
    let result = detach_if_large(py, bytes.len(), || {
        semcache_core::scan_request(bytes, limits)
    });
    match result {
        Ok(inner) => Ok(ScanResult {
            inner,
            body: body.unbind(),
            turns: OnceLock::new(),
        }),
        Err(e) => Err(to_py_err(py, &e)),
    }
}

/// The canonical form of any JSON document.
#[pyfunction]
// `None` stands for the default so that any int can be checked (and refused with a
// `ValueError`) here; the text signature shows the real defaults.
#[pyo3(
    signature = (body, *, max_depth = None, max_bytes = None),
    text_signature = "(body, *, max_depth=128, max_bytes=10485760)"
)]
pub fn canonical_json<'py>(
    py: Python<'py>,
    body: &Bound<'py, PyBytes>,
    max_depth: Option<&Bound<'_, PyAny>>,
    max_bytes: Option<&Bound<'_, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let limits = limits(max_depth, max_bytes)?;
    let bytes = body.as_bytes();
    match detach_if_large(py, bytes.len(), || {
        semcache_core::canonical_json(bytes, limits)
    }) {
        Ok(out) => Ok(PyBytes::new(py, &out)),
        Err(e) => Err(to_py_err(py, &e)),
    }
}

/// Adds the module constants of this part.
pub fn add_constants(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("DEFAULT_MAX_DEPTH", DEFAULT_MAX_DEPTH)?;
    m.add("DEFAULT_MAX_BYTES", DEFAULT_MAX_BYTES)?;
    Ok(())
}
