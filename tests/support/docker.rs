//! A Docker engine for one test: Debian's `dockerd` (with the `containerd` it starts itself),
//! started by hand without systemd, its socket, data and state in the test's own directories,
//! no iptables rules and no default bridge (containers use `--network none` or `host`).
//! [`Dockerd::env`] is what a `docker` client (and `coffer`, which runs one) needs to reach it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Docker engine; its containers removed and the engine stopped when dropped.
pub struct Dockerd {
    child: Child,
    socket: PathBuf,
    exec_root: PathBuf,
}

impl Dockerd {
    /// Start an engine with its data under `dir`.
    pub fn start(dir: &Path) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::fs::create_dir_all(dir).unwrap();
        // containerd's sockets live under the exec root: keep it short (108-byte limit).
        let exec_root = PathBuf::from(format!("/run/cdk{}-{n}", std::process::id()));
        let socket = dir.join("docker.sock");
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("dockerd.log")).unwrap())
            .spawn()
            .expect("dockerd (docker.io) is installed");
        let engine = Self {
            child,
            socket,
            exec_root,
        };
        let started = Instant::now();
        while !engine.docker(&["info"]).status.success() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "dockerd did not answer: {}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        engine
    }

    /// The environment a `docker` client needs to reach this engine.
    pub fn env(&self) -> (&'static str, String) {
        ("DOCKER_HOST", format!("unix://{}", self.socket.display()))
    }

    /// Run `docker ARGS` against this engine.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        let (k, v) = self.env();
        Command::new("docker")
            .args(args)
            .env(k, v)
            .output()
            .expect("a docker client is installed")
    }

    /// Run a shell script with this engine's `DOCKER_HOST`; its stdout (it must succeed).
    pub fn sh(&self, script: &str) -> String {
        let (k, v) = self.env();
        let out = Command::new("sh")
            .args(["-c", script])
            .env(k, v)
            .output()
            .unwrap();
        super::mariadb::check(out, script)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.sh("docker ps -aq | xargs -r docker rm -f -v >/dev/null 2>&1 || true");
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let started = Instant::now();
        while self.child.try_wait().ok().flatten().is_none()
            && started.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.exec_root);
    }
}
