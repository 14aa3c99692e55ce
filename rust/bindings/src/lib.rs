//! `semanticcache._native`: type conversion, error mapping and GIL release around
//! `semcache-core`. No cache logic lives here.
use pyo3::prelude::*;

mod errors;
mod scan;

#[pymodule]
mod _native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::scan::{ScanResult, canonical_json, scan_request};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        crate::scan::add_constants(m)?;
        Ok(())
    }
}
