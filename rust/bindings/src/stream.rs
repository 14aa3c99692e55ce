//! Server-Sent Events, the streaming tee buffer and the chat-completion
//! assembler/renderer.
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use semcache_core::chat::{self, ChatError};
use semcache_core::{sse, tee};

use crate::errors::{ErrorClass, native_error};
use crate::gil::detach_if_large;

fn stream_error(py: Python<'_>, e: &ChatError) -> PyErr {
    native_error(
        py,
        ErrorClass::StreamFormat,
        &e.message,
        e.kind.code(),
        e.offset,
    )
}

/// One dispatched Server-Sent Event.
#[pyclass(frozen, module = "semanticcache._native", name = "SseEvent")]
pub struct SseEvent(sse::SseEvent);

#[pymethods]
impl SseEvent {
    /// Event type; `"message"` when the stream gave none.
    #[getter]
    fn event(&self) -> &str {
        &self.0.event
    }

    /// Data lines joined with `\n`.
    #[getter]
    fn data(&self) -> &str {
        &self.0.data
    }

    #[getter]
    fn id(&self) -> Option<&str> {
        self.0.id.as_deref()
    }

    #[getter]
    fn retry(&self) -> Option<u64> {
        self.0.retry
    }

    fn __repr__(&self) -> String {
        format!(
            "SseEvent(event={:?}, data={:?}, id={:?}, retry={:?})",
            self.0.event, self.0.data, self.0.id, self.0.retry
        )
    }
}

fn to_py_events(events: &[sse::SseEvent]) -> Vec<SseEvent> {
    events.iter().cloned().map(SseEvent).collect()
}

/// Copies a response body as it is forwarded, up to `max_bytes`.
///
/// Not thread-safe: meant for the one task that forwards a response. Concurrent use
/// from several threads raises (`PyO3`'s borrow check) rather than corrupting state.
#[pyclass(module = "semanticcache._native", name = "StreamTee")]
pub struct StreamTee(tee::StreamTee);

#[pymethods]
impl StreamTee {
    #[new]
    #[pyo3(signature = (max_bytes, *, sse = false))]
    fn new(max_bytes: i64, sse: bool) -> PyResult<Self> {
        let cap = usize::try_from(max_bytes).map_err(|_| {
            PyValueError::new_err(format!("max_bytes must be >= 0, got {max_bytes}"))
        })?;
        Ok(Self(tee::StreamTee::new(cap, sse)))
    }

    /// Copy (and parse) one chunk; `False` once the cap has been passed.
    fn push(&mut self, py: Python<'_>, chunk: &[u8]) -> PyResult<bool> {
        let inner = &mut self.0;
        detach_if_large(py, chunk.len(), || inner.push(chunk))
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Mark the end of the body.
    fn close(&mut self) {
        self.0.close();
    }

    #[getter]
    fn overflowed(&self) -> bool {
        self.0.overflowed()
    }

    #[getter]
    fn nbytes(&self) -> u64 {
        self.0.nbytes()
    }

    #[getter]
    fn end_state(&self) -> &'static str {
        self.0.end_state().as_str()
    }

    #[getter]
    fn complete(&self) -> bool {
        self.0.complete()
    }

    /// The copied bytes.
    fn getvalue<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.body())
    }

    /// Events dispatched so far.
    fn events(&self) -> Vec<SseEvent> {
        to_py_events(self.0.events())
    }

    /// The `chat.completion` JSON equivalent to the copied stream.
    fn assemble_chat_completion<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &self.0;
        let out = detach_if_large(py, inner.body().len(), || chat::assemble_tee(inner))
            .map_err(|e| stream_error(py, &e))?;
        Ok(PyBytes::new(py, &out))
    }

    fn __repr__(&self) -> String {
        format!(
            "StreamTee(nbytes={}, overflowed={}, end_state={:?})",
            self.0.nbytes(),
            if self.0.overflowed() { "True" } else { "False" },
            self.0.end_state().as_str()
        )
    }
}

/// Parse a whole Server-Sent Events body (an unterminated last event is dropped).
#[pyfunction]
pub fn parse_sse(py: Python<'_>, data: &[u8]) -> Vec<SseEvent> {
    let events = detach_if_large(py, data.len(), || sse::parse(data));
    events.into_iter().map(SseEvent).collect()
}

/// Assemble a complete chat-completion SSE body into the completion JSON.
#[pyfunction]
pub fn assemble_chat_completion<'py>(
    py: Python<'py>,
    sse_body: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let out = detach_if_large(py, sse_body.len(), || chat::assemble_body(sse_body))
        .map_err(|e| stream_error(py, &e))?;
    Ok(PyBytes::new(py, &out))
}

/// Render a stored `chat.completion` JSON as an SSE body ending with `data: [DONE]`.
#[pyfunction]
#[pyo3(signature = (completion, *, include_usage = false))]
pub fn render_chat_completion_sse<'py>(
    py: Python<'py>,
    completion: &[u8],
    include_usage: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let out = detach_if_large(py, completion.len(), || {
        chat::render(completion, include_usage)
    })
    .map_err(|e| stream_error(py, &e))?;
    Ok(PyBytes::new(py, &out))
}
