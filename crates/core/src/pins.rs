//! The plugin lock file: a deployment's plugin set pinned by SHA-256 digest, next to the
//! deployment file (`deployment.toml` → `deployment.lock`). When it exists, a run refuses any
//! plugin whose digest differs from the pinned one, or that is not pinned at all.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::registry::Registry;

/// One pinned plugin.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Name.
    pub name: String,
    /// Version it says it is.
    pub version: String,
    /// Contract version it targets.
    pub contract: String,
    /// SHA-256 of the component.
    pub sha256: String,
    /// `built-in` or the file it was installed from.
    pub origin: String,
}

/// The lock file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinFile {
    /// Pinned plugins, by name.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<Pin>,
}

/// Why the lock file cannot be used, or what it refuses.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// It cannot be read or written.
    #[error("plugin lock file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Installed plugins do not match it.
    #[error(
        "installed plugins (in {dir}, and the built-in ones) do not match the lock file \
         {path}:\n{}\nTo accept one rebuilt or changed plugin: `coffer plugins upgrade NAME \
         FILE.wasm` (shows the change from the pinned build, then --yes); `coffer plugins lock` \
         re-pins every installed plugin as it is now, dropping the old pins. `coffer plugins \
         verify` shows the same lines.",
        .problems.join("\n"),
        dir = .plugin_dir.display()
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The plugin directory that was searched.
        plugin_dir: PathBuf,
        /// One line per plugin.
        problems: Vec<String>,
    },
}

/// The lock file of the deployment file at `deployment`.
pub fn path_for(deployment: &Path) -> PathBuf {
    deployment.with_extension("lock")
}

impl PinFile {
    /// Read `path`; `None` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, PinError> {
        let err = |reason: String| PinError::File {
            path: path.to_path_buf(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| err(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Pin every plugin of `registry`.
    pub fn of(registry: &Registry) -> Self {
        Self {
            plugins: registry
                .iter()
                .map(|p| Pin {
                    name: p.identity.name.clone(),
                    version: p.identity.version.clone(),
                    contract: p.identity.contract.clone(),
                    sha256: p.identity.digest.clone(),
                    origin: p.origin.to_string(),
                })
                .collect(),
        }
    }

    /// Write it to `path` (atomically).
    pub fn save(&self, path: &Path) -> Result<(), PinError> {
        let err = |reason: String| PinError::File {
            path: path.to_path_buf(),
            reason,
        };
        let text = format!(
            "# Coffer plugin lock: every plugin of this deployment pinned by SHA-256.\n\
             # Written by `coffer plugins lock|install|upgrade`; checked before every run.\n\n{}",
            toml::to_string(self).map_err(|e| err(e.to_string()))?
        );
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// One line per installed plugin that is not pinned, or pinned with another digest.
    pub fn problems(&self, registry: &Registry) -> Vec<String> {
        let mut problems = Vec::new();
        for p in registry.iter() {
            let name = &p.identity.name;
            match self.plugins.iter().find(|l| &l.name == name) {
                None => problems.push(format!(
                    "  {name} {} ({}): not in the lock file",
                    p.identity.version, p.origin
                )),
                Some(l) if l.sha256 != p.identity.digest => problems.push(format!(
                    "  {name}: installed {} {} has sha256 {}, the lock pins {} {} with sha256 {}",
                    p.identity.version, p.origin, p.identity.digest, l.version, l.origin, l.sha256
                )),
                Some(_) => {}
            }
        }
        for l in &self.plugins {
            if registry.get(&l.name).is_none() {
                problems.push(format!(
                    "  {}: the lock pins {} {} with sha256 {}, but it is not installed (or does not load)",
                    l.name, l.version, l.origin, l.sha256
                ));
            }
        }
        problems
    }

    /// Refuse a registry that does not match.
    pub fn check(
        &self,
        registry: &Registry,
        path: &Path,
        plugin_dir: &Path,
    ) -> Result<(), PinError> {
        let problems = self.problems(registry);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PinError::Mismatch {
                path: path.to_path_buf(),
                plugin_dir: plugin_dir.to_path_buf(),
                problems,
            })
        }
    }

    /// The pin of plugin `name`, if any.
    pub fn pin(&self, name: &str) -> Option<&Pin> {
        self.plugins.iter().find(|p| p.name == name)
    }
}
