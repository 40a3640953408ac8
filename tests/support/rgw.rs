//! Ceph's RADOS Gateway — the S3 service most OpenStack deployments run — on a one-node Ceph
//! cluster (a monitor and one in-memory OSD), from Debian's packages, started by
//! `scripts/rgw.sh` (the backends bench starts it the same way). Stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::free_port;

/// The S3 user's access key.
pub const ACCESS: &str = "coffer-rgw";
/// Its secret key.
pub const SECRET: &str = "rgw-s3cret-k3y";

/// A running gateway.
pub struct Rgw {
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

fn script(call: &str, dir: &Path, args: &[String]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {root}/scripts/common.sh && source {root}/scripts/rgw.sh && {call} \"$@\"",
            root = root.display()
        ))
        .arg("rgw")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{call}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Rgw {
    /// Start a cluster and its gateway under `dir`, with the user [`ACCESS`]/[`SECRET`].
    pub fn start(dir: &Path) -> Self {
        let (mon, port) = (free_port(), free_port());
        let args = [mon, port].map(|p| p.to_string());
        script(
            "rgw_up",
            dir,
            &[
                args[0].clone(),
                args[1].clone(),
                ACCESS.into(),
                SECRET.into(),
                "1024".into(),
            ],
        );
        Self {
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Stop it (the gateway and the cluster).
    pub fn stop(&self) {
        script("rgw_down", &self.dir, &[]);
    }
}

impl Drop for Rgw {
    fn drop(&mut self) {
        self.stop();
    }
}
