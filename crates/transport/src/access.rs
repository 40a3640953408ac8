//! Temporary access, like the talk's enable_ssh/disable_ssh: a per-run ed25519 key installed
//! in each node's authorized_keys with `from=` (only from the backup host) and `expiry-time=`
//! (dead by itself if never removed), removed when the run ends, and the removal verified by
//! reading the file back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::NodeHandle;
use crate::process::{self, CommandError};

/// The tag every Coffer access key carries in its comment, followed by its id.
pub const TAG: &str = "coffer-access:";

/// How long a command editing authorized_keys may take.
const EDIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The deployment's `[access]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessConfig {
    /// Install a per-run key at the start of every run and remove it at the end.
    pub temporary: bool,
    /// The `from=` pattern list: where Coffer connects from, as the nodes see it.
    pub from: String,
    /// Lifetime written into `expiry-time=`.
    pub ttl: Duration,
    /// The authorized_keys file on each node (`~/` is the SSH user's home).
    pub authorized_keys: String,
}

/// Why access could not be granted, listed or revoked on a node.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The key could not be generated.
    #[error("cannot generate the access key with ssh-keygen: {0}")]
    Keygen(String),
    /// A command on the node failed.
    #[error("node `{node}`: cannot {step} in {file}: {detail}")]
    Node {
        /// Node.
        node: String,
        /// What was being done.
        step: &'static str,
        /// The authorized_keys file.
        file: String,
        /// What went wrong.
        detail: String,
    },
    /// The key was still present after removal.
    #[error(
        "node `{node}`: the access key {id} is still in {file} after removal; remove the lines tagged `{TAG}{id}` by hand"
    )]
    StillPresent {
        /// Node.
        node: String,
        /// Key id.
        id: String,
        /// The authorized_keys file.
        file: String,
    },
}

/// A generated key pair. The private half lives in a 0700 directory and is deleted with it.
#[derive(Debug)]
pub struct AccessKey {
    /// Unique id, also in the key's comment (`coffer-access:ID`).
    pub id: String,
    /// Private key file.
    pub private: PathBuf,
    /// The public key line (`ssh-ed25519 AAAA… coffer-access:ID`).
    pub public: String,
}

impl AccessKey {
    /// Generate a key pair into `dir` (created 0700) with `ssh-keygen`.
    pub async fn generate(dir: &Path, id: &str) -> Result<Self, AccessError> {
        use std::os::unix::fs::DirBuilderExt;
        let keygen = |e: std::io::Error| AccessError::Keygen(format!("{}: {e}", dir.display()));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(keygen)?;
        let private = dir.join("id_ed25519");
        let out = tokio::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("{TAG}{id}"))
            .arg("-f")
            .arg(&private)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(keygen)?;
        if !out.status.success() {
            return Err(AccessError::Keygen(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        let public = std::fs::read_to_string(private.with_extension("pub"))
            .map_err(keygen)?
            .trim()
            .to_string();
        Ok(Self {
            id: id.into(),
            private,
            public,
        })
    }

    /// The authorized_keys line: only from `from`, dead after `expires`, no forwarding or pty.
    pub fn authorized_line(&self, from: &str, expires: jiff::Timestamp) -> String {
        let expiry = expires.strftime("%Y%m%d%H%M%SZ");
        format!(
            "from=\"{from}\",expiry-time=\"{expiry}\",restrict {}",
            self.public
        )
    }

    /// Delete the key pair.
    pub fn destroy(&self) {
        if let Some(dir) = self.private.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Shell prologue: `$f` is the authorized_keys file with `~/` expanded on the node.
const RESOLVE: &str = r#"f="$1"; case "$f" in "~/"*) f="$HOME/${f#"~/"}";; esac"#;

async fn on_node(
    node: &NodeHandle,
    step: &'static str,
    file: &str,
    script: &str,
    args: &[&str],
    stdin: Vec<u8>,
) -> Result<String, AccessError> {
    let mut argv = vec![
        "sh".to_string(),
        "-c".into(),
        format!("set -e; {RESOLVE}; {script}"),
        "coffer-access".into(),
        file.into(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let err = |detail: String| AccessError::Node {
        node: node.name.clone(),
        step,
        file: file.into(),
        detail,
    };
    // The login user's own file: never through `become`.
    let done = process::run(&node.as_login(), &argv, stdin, EDIT_TIMEOUT, 1 << 20)
        .await
        .map_err(|e: CommandError| err(e.to_string()))?;
    if done.exit_code != Some(0) {
        return Err(err(format!(
            "exit {:?}: {}",
            done.exit_code,
            String::from_utf8_lossy(&done.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&done.stdout).into_owned())
}

/// Append `line` to the node's authorized_keys (created 0600 in a 0700 directory if missing).
pub async fn install(node: &NodeHandle, file: &str, line: &str) -> Result<(), AccessError> {
    let script = r#"umask 077; mkdir -p "$(dirname "$f")"
if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >> "$f"; fi
cat >> "$f""#;
    on_node(
        node,
        "install the access key",
        file,
        script,
        &[],
        format!("{line}\n").into_bytes(),
    )
    .await
    .map(drop)
}

/// Remove every line carrying `tag` from the node's authorized_keys, atomically (a temporary
/// file with the same owner and mode, renamed over it), then read the file back and verify
/// that none is left. Returns how many lines were removed.
pub async fn revoke(node: &NodeHandle, file: &str, tag: &str) -> Result<usize, AccessError> {
    let script = r#"[ -e "$f" ] || { echo 0; exit 0; }
n=$(grep -cF -- "$2" "$f" || true)
if [ "$n" != 0 ]; then
  t="$f.coffer-$$"
  rc=0; grep -vF -- "$2" "$f" > "$t" || rc=$?
  [ "$rc" -le 1 ] || { rm -f "$t"; exit 2; }
  chown --reference="$f" "$t" 2>/dev/null || true
  chmod --reference="$f" "$t"
  mv -f "$t" "$f"
fi
echo "$n""#;
    let removed = on_node(node, "remove the access key", file, script, &[tag], vec![])
        .await?
        .trim()
        .parse()
        .unwrap_or(0);
    // Verify with a separate read: the key must be gone.
    let left = list(node, file, tag).await?;
    if !left.is_empty() {
        return Err(AccessError::StillPresent {
            node: node.name.clone(),
            id: tag.trim_start_matches(TAG).into(),
            file: file.into(),
        });
    }
    Ok(removed)
}

/// The lines of the node's authorized_keys that carry `tag`.
pub async fn list(node: &NodeHandle, file: &str, tag: &str) -> Result<Vec<String>, AccessError> {
    let script = r#"[ -e "$f" ] || exit 0; grep -F -- "$2" "$f" || [ $? -eq 1 ]"#;
    Ok(
        on_node(node, "read the access keys", file, script, &[tag], vec![])
            .await?
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn install_list_revoke_on_the_local_node_keeps_other_lines() {
        let dir = std::env::temp_dir().join(format!("coffer-access-test-{}", std::process::id()));
        let key = AccessKey::generate(&dir.join("key"), "t1").await.unwrap();
        let file = dir.join("home/.ssh/authorized_keys");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        // An existing key without a final newline must stay intact.
        std::fs::write(&file, "ssh-ed25519 AAAAother operator").unwrap();
        let node = NodeHandle::local("local", vec![]);
        let f = file.to_str().unwrap();
        let line = key.authorized_line("10.0.0.1", jiff::Timestamp::UNIX_EPOCH);
        assert!(line.starts_with(
            "from=\"10.0.0.1\",expiry-time=\"19700101000000Z\",restrict ssh-ed25519 "
        ));
        install(&node, f, &line).await.unwrap();
        assert_eq!(
            list(&node, f, &format!("{TAG}t1")).await.unwrap(),
            vec![line.clone()]
        );
        assert_eq!(revoke(&node, f, &format!("{TAG}t1")).await.unwrap(), 1);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "ssh-ed25519 AAAAother operator\n"
        );
        assert_eq!(revoke(&node, f, &format!("{TAG}t1")).await.unwrap(), 0);
        key.destroy();
        assert!(!key.private.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
