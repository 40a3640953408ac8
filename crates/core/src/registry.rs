//! The installed plugins: those shipped in the binary, and third-party components from a plugin
//! directory (a file there replaces the built-in plugin of the same name). When the deployment
//! trusts signing keys, a file without a valid signature by one of them is not loaded.

use std::collections::BTreeMap;
use std::path::Path;

use crate::signing::{SignatureError, TrustedKeys};
use coffer_runtime::{LoadedPlugin, PluginFault, PluginOrigin, Runtime};

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// Plugins by name.
pub struct Registry {
    plugins: BTreeMap<String, LoadedPlugin>,
    /// Plugins that could not be loaded, with why; they are reported, not fatal, unless used.
    pub broken: Vec<PluginFault>,
    /// Plugin files refused for their signature (only when signatures are required).
    pub refused: Vec<SignatureError>,
    /// The signer's key fingerprint of each signed plugin, by name.
    pub signed_by: BTreeMap<String, String>,
}

impl Registry {
    /// Load the built-in plugins and every `*.wasm` in `plugin_dir` (signed by one of
    /// `trusted`, when it holds keys).
    pub async fn load(
        runtime: &Runtime,
        plugin_dir: Option<&Path>,
        trusted: &TrustedKeys,
    ) -> std::io::Result<Self> {
        let mut plugins = BTreeMap::new();
        let mut broken = Vec::new();
        let mut refused = Vec::new();
        let mut signed_by = BTreeMap::new();
        for (_, wasm) in BUILTIN_PLUGINS {
            match runtime.load(wasm, PluginOrigin::Builtin).await {
                Ok(p) => {
                    plugins.insert(p.info.name.clone(), p);
                }
                Err(e) => broken.push(e),
            }
        }
        if let Some(dir) = plugin_dir.filter(|d| d.exists()) {
            let mut files: Vec<_> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                .collect();
            files.sort();
            for path in files {
                let wasm = std::fs::read(&path)?;
                let signer = if trusted.required() {
                    match trusted.verify(&path, &wasm) {
                        Ok(fingerprint) => Some(fingerprint),
                        Err(e) => {
                            refused.push(e);
                            continue;
                        }
                    }
                } else {
                    None
                };
                match runtime.load(&wasm, PluginOrigin::File(path.clone())).await {
                    Ok(p) => {
                        if let Some(f) = signer {
                            signed_by.insert(p.info.name.clone(), f);
                        }
                        if let Some(old) = plugins.get(&p.info.name) {
                            tracing::info!(
                                "plugin `{}` from {} replaces the {} one",
                                p.info.name,
                                path.display(),
                                old.origin
                            );
                        }
                        plugins.insert(p.info.name.clone(), p);
                    }
                    Err(e) => broken.push(e),
                }
            }
        }
        Ok(Self {
            plugins,
            broken,
            refused,
            signed_by,
        })
    }

    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Option<&LoadedPlugin> {
        self.plugins.get(name)
    }

    /// All plugins, by name.
    pub fn iter(&self) -> impl Iterator<Item = &LoadedPlugin> {
        self.plugins.values()
    }

    /// Names of all plugins.
    pub fn names(&self) -> Vec<String> {
        self.plugins.keys().cloned().collect()
    }
}
