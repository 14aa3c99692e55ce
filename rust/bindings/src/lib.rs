//! `semanticcache._native`: type conversion, error mapping and GIL release around
//! `semcache-core`. No cache logic lives here.
use pyo3::prelude::*;

mod digest;
mod errors;
mod gil;
mod scan;
mod stream;

#[pymodule]
mod _native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::digest::{hmac_sha256, hmac_sha256_hex};
    #[pymodule_export]
    use crate::scan::{ScanResult, canonical_json, scan_request};
    #[pymodule_export]
    use crate::stream::{
        SseEvent, StreamTee, assemble_chat_completion, parse_sse, render_chat_completion_sse,
    };

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        crate::scan::add_constants(m)?;
        Ok(())
    }
}
