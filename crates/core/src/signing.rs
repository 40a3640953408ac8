//! Plugin signatures. A deployment may name trusted ed25519 keys (`[plugin-signing]
//! trusted-keys`, OpenSSH public key files); then every plugin from the plugin directory must
//! come with `NAME.wasm.sig`: an SSH signature (`ssh-keygen -Y sign -n coffer-plugin`) by one of
//! those keys over the component file. Built-in plugins are part of the signed-off binary.

use std::path::{Path, PathBuf};

use ssh_key::{Algorithm, HashAlg, PublicKey, SshSig};

/// The SSH signature namespace of plugin signatures (`ssh-keygen -Y sign -n`).
pub const NAMESPACE: &str = "coffer-plugin";

/// Why a plugin's signature is refused, or the trusted keys cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// A trusted key file is unreadable or holds something else than ed25519 public keys.
    #[error("trusted plugin-signing key file {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No signature file next to the plugin.
    #[error(
        "plugin {plugin}: unsigned ({sig} does not exist), and [plugin-signing] requires a \
         signature by a trusted key: `ssh-keygen -Y sign -n {NAMESPACE} -f KEY {plugin}` writes one"
    )]
    Unsigned {
        /// The component file.
        plugin: PathBuf,
        /// Where its signature should be.
        sig: PathBuf,
    },
    /// The signature file cannot be read as an SSH signature for plugins.
    #[error("plugin {plugin}: {sig} is not a usable plugin signature: {reason}")]
    Malformed {
        /// The component file.
        plugin: PathBuf,
        /// Its signature file.
        sig: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Signed, but by a key that is not trusted.
    #[error(
        "plugin {plugin}: signed by {fingerprint}, which is not a trusted key (trusted: {trusted})"
    )]
    Untrusted {
        /// The component file.
        plugin: PathBuf,
        /// The signer's key.
        fingerprint: String,
        /// The trusted keys' fingerprints.
        trusted: String,
    },
    /// The signature does not match the file.
    #[error(
        "plugin {plugin}: the signature by {fingerprint} does not match the file (was it \
         changed after signing?)"
    )]
    Mismatch {
        /// The component file.
        plugin: PathBuf,
        /// The signer's key.
        fingerprint: String,
    },
}

/// The keys a deployment trusts to sign plugins.
#[derive(Debug, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

/// Where the signature of the component at `plugin` is kept.
pub fn signature_path(plugin: &Path) -> PathBuf {
    let mut name = plugin.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

impl TrustedKeys {
    /// Read the ed25519 public keys in `paths` (one or more OpenSSH lines per file; `#` comments
    /// and blank lines are skipped).
    pub fn load(paths: &[PathBuf]) -> Result<Self, SignatureError> {
        let mut keys = Vec::new();
        for path in paths {
            let err = |reason: String| SignatureError::Key {
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            let before = keys.len();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let key = PublicKey::from_openssh(line)
                    .map_err(|e| err(format!("line {}: {e}", i + 1)))?;
                if key.algorithm() != Algorithm::Ed25519 {
                    return Err(err(format!(
                        "line {}: a {} key; plugin signatures use ed25519 keys",
                        i + 1,
                        key.algorithm()
                    )));
                }
                keys.push(key);
            }
            if keys.len() == before {
                return Err(err("no public key in it".into()));
            }
        }
        Ok(Self { keys })
    }

    /// Whether any key is trusted (and so every plugin file must be signed).
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The trusted keys' SHA-256 fingerprints.
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
            .collect()
    }

    /// Check the signature of `wasm`, read from `plugin`; the signer's fingerprint.
    pub fn verify(&self, plugin: &Path, wasm: &[u8]) -> Result<String, SignatureError> {
        let sig_path = signature_path(plugin);
        let text = match std::fs::read_to_string(&sig_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SignatureError::Unsigned {
                    plugin: plugin.to_path_buf(),
                    sig: sig_path,
                });
            }
            Err(e) => {
                return Err(SignatureError::Malformed {
                    plugin: plugin.to_path_buf(),
                    sig: sig_path,
                    reason: e.to_string(),
                });
            }
        };
        let malformed = |reason: String| SignatureError::Malformed {
            plugin: plugin.to_path_buf(),
            sig: sig_path.clone(),
            reason,
        };
        let sig = SshSig::from_pem(text.trim()).map_err(|e| malformed(e.to_string()))?;
        if sig.namespace() != NAMESPACE {
            return Err(malformed(format!(
                "made for namespace `{}`, not `{NAMESPACE}`",
                sig.namespace()
            )));
        }
        let signer = PublicKey::from(sig.public_key().clone());
        let fingerprint = signer.fingerprint(HashAlg::Sha256).to_string();
        let Some(key) = self.keys.iter().find(|k| k.key_data() == sig.public_key()) else {
            return Err(SignatureError::Untrusted {
                plugin: plugin.to_path_buf(),
                fingerprint,
                trusted: self.fingerprints().join(", "),
            });
        };
        key.verify(NAMESPACE, wasm, &sig)
            .map_err(|_| SignatureError::Mismatch {
                plugin: plugin.to_path_buf(),
                fingerprint: fingerprint.clone(),
            })?;
        Ok(fingerprint)
    }
}
