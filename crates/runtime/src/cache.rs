//! Compiled components kept on disk, so a second run does not compile again.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CompileStats {
    /// Whether it came from the cache.
    pub cached: bool,
    /// How long compiling or loading took.
    pub duration: Duration,
}

/// A directory of compiled components, keyed by the wasm's SHA-256 and the engine's
/// compatibility hash (so an upgraded `coffer` never loads code compiled by another one).
pub struct ComponentCache {
    dir: PathBuf,
}

impl ComponentCache {
    /// A cache in `dir` (created on first write, mode 0700).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn entry(&self, engine: &Engine, digest: &str) -> PathBuf {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        self.dir.join(format!("{digest}-{:016x}.cwasm", h.finish()))
    }

    /// The compiled form of `wasm` (whose SHA-256 is `digest`), from the cache or compiled now
    /// and stored. A cache that cannot be written only costs time: it is not an error.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, CompileStats)> {
        let started = Instant::now();
        let path = self.entry(engine, digest);
        if path.exists() {
            if let Ok(c) = deserialize(engine, &path) {
                return Ok((
                    c,
                    CompileStats {
                        cached: true,
                        duration: started.elapsed(),
                    },
                ));
            }
            let _ = std::fs::remove_file(&path);
        }
        let component = Component::new(engine, wasm)?;
        if let Ok(bytes) = component.serialize() {
            let _ = write_private(&self.dir, &path, &bytes);
        }
        Ok((
            component,
            CompileStats {
                cached: false,
                duration: started.elapsed(),
            },
        ))
    }
}

/// Load a compiled component the host itself wrote.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was written by `write_private` into a directory only this user can
    // write (0700), under a name derived from the wasm's SHA-256 and this engine's
    // compatibility hash; wasmtime also checks the engine configuration on load.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(std::io::Error::other(
            "cache directory is writable by others",
        ));
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
