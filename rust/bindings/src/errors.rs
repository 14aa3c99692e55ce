//! Raises the Python exception classes of `semanticcache.errors` from Rust.
//!
//! The hierarchy is defined once, in Python, so that users catch one set of classes
//! whichever side raised. The module is imported on the first error only.
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The classes of `semanticcache.errors` that native code raises.
#[derive(Clone, Copy, Debug)]
pub enum ErrorClass {
    RequestBody,
    #[allow(dead_code, reason = "raised by the stream tee part")]
    StreamFormat,
}

impl ErrorClass {
    fn name(self) -> &'static str {
        match self {
            ErrorClass::RequestBody => "RequestBodyError",
            ErrorClass::StreamFormat => "StreamFormatError",
        }
    }
}

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

/// Build `semanticcache.errors.<class>(message, kind, offset)` as a `PyErr`.
///
/// Falls back to `ValueError` only if the Python module itself cannot be imported
/// (a broken install), so an error is never lost.
pub fn native_error(
    py: Python<'_>,
    class: ErrorClass,
    message: &str,
    kind: &str,
    offset: Option<usize>,
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module = ERRORS_MODULE
            .get_or_try_init(py, || py.import("semanticcache.errors").map(Bound::unbind))?
            .bind(py);
        let cls = module.getattr(class.name())?.cast_into::<PyType>()?;
        let value = cls.call1((message, kind, offset))?;
        Ok(PyErr::from_value(value))
    };
    build().unwrap_or_else(|_| pyo3::exceptions::PyValueError::new_err(message.to_owned()))
}
