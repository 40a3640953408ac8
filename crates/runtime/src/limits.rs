//! Per-store resource limits.

use wasmtime::ResourceLimiter;

/// Caps a plugin's linear memory and tables; remembers when the cap was hit so the error can
/// say so.
#[derive(Debug)]
pub struct MemoryCap {
    /// Most bytes of linear memory.
    pub max_bytes: usize,
    /// Set once a growth was refused.
    pub exceeded: bool,
}

impl MemoryCap {
    /// A cap of `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Err(wasmtime::format_err!(
                "memory limit of {} MiB reached",
                self.max_bytes >> 20
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
