//! A real Redis server on a test node, in the node's own `/var/lib/redis` (data, config, pid),
//! listening on the node's address; `systemctl start|stop redis-server` (the stand-in of
//! `systemctl.rs`) starts and stops it.

use std::process::{Command, Output};

use super::nodes::Node;

/// The node's Redis directory.
pub const DIR: &str = "/var/lib/redis";

/// A running redis-server; stopped when dropped.
pub struct Redis {
    pid_file: std::path::PathBuf,
    address: String,
    password: String,
}

impl Redis {
    /// Configure and start Redis on `node` with `password` and `extra` config lines.
    pub fn start(node: &Node, password: &str, extra: &str) -> Self {
        super::systemctl::install(node);
        std::fs::write(
            node.own(DIR).join("redis.conf"),
            format!(
                "bind {}\nport 6379\ndir {DIR}\ndaemonize yes\npidfile {DIR}/redis.pid\n\
                 logfile {DIR}/redis.log\nrequirepass \"{password}\"\nenable-debug-command yes\n\
                 save \"\"\n{extra}",
                node.address
            ),
        )
        .unwrap();
        let out = node.sh("/usr/local/sbin/systemctl start redis-server");
        assert!(out.status.success(), "redis did not start: {out:?}");
        Self {
            pid_file: node.own(DIR).join("redis.pid"),
            address: node.address.clone(),
            password: password.into(),
        }
    }

    /// Fill db0 with `n` string keys of about 45 bytes.
    pub fn fill(&self, n: u32) {
        self.cli(&[
            "EVAL",
            &format!(
                "for i = 1, {n} do redis.call('SET', 'k:'..i, string.rep('x', 40)..i) end return 1"
            ),
            "0",
        ]);
    }

    /// Run redis-cli with `args` against this server (password through --askpass).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn cli_output(&self, args: &[&str]) -> Output {
        use std::io::Write as _;
        let mut child = Command::new("redis-cli")
            .args([
                "--no-auth-warning",
                "--askpass",
                "-h",
                &self.address,
                "-p",
                "6379",
            ])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{}", self.password).unwrap();
        child.wait_with_output().unwrap()
    }
}

/// Put the node's Redis directory on a 1 MiB tmpfs (its files copied onto it, Redis restarted
/// there): a restore of a bigger dump runs out of space. Only on an isolated node (the mount
/// and the restarted Redis end with it).
pub fn on_tiny_disk(node: &Node) {
    let out = node.sh(&format!(
        "/usr/local/sbin/systemctl stop redis-server && rm -rf /tmp/redis && \
         cp -a {DIR} /tmp/redis && mount -t tmpfs -o size=1m tmpfs {DIR} && \
         cp -a /tmp/redis/. {DIR}/ && /usr/local/sbin/systemctl start redis-server"
    ));
    assert!(out.status.success(), "{out:?}");
}

/// Undo [`on_tiny_disk`]: Redis back on the node's own directory, with the tmpfs's files.
pub fn off_tiny_disk(node: &Node) {
    let out = node.sh(&format!(
        "/usr/local/sbin/systemctl stop redis-server && rm -rf /tmp/redis && \
         cp -a {DIR} /tmp/redis && umount {DIR} && cp -a /tmp/redis/. {DIR}/ && \
         /usr/local/sbin/systemctl start redis-server"
    ));
    assert!(out.status.success(), "{out:?}");
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
