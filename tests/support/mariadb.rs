//! A real MariaDB server on a test node, started without systemd inside the node's mount
//! namespace: its datadir and socket are the node's own `/var/lib/mysql` and `/run/mysqld`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::nodes::Node;

/// A running mariadbd; stopped when dropped.
pub struct Mariadb {
    pid: u32,
    /// Its error log (host path).
    pub log: PathBuf,
}

fn check(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Mariadb {
    /// Create a fresh datadir on `node` and start mariadbd there, listening on the node's
    /// address; root logs in through the socket (unix_socket), as on Debian.
    pub fn start(node: &Node, dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join(format!("{}-my.cnf", node.name));
        let log = dir.join(format!("{}-mariadb.log", node.name));
        std::fs::write(
            &conf,
            format!(
                "[mysqld]\nuser=mysql\ndatadir=/var/lib/mysql\nsocket=/run/mysqld/mysqld.sock\n\
                 pid-file=/run/mysqld/mysqld.pid\nbind-address={}\nport=3306\nskip-name-resolve\n\
                 log-error={}\ninnodb_buffer_pool_size=64M\n",
                node.address,
                log.display()
            ),
        )
        .unwrap();
        check(
            node.sh(&format!(
                "chown -R mysql:mysql /var/lib/mysql /run/mysqld && touch {log} && chown mysql {log} && \
                 mariadb-install-db --defaults-file={conf} --skip-test-db >/dev/null 2>&1 && \
                 (setsid mariadbd --defaults-file={conf} </dev/null >/dev/null 2>&1 &)",
                conf = conf.display(),
                log = log.display()
            )),
            "mariadb-install-db",
        );
        let started = Instant::now();
        while !node
            .sh("mariadb-admin ping >/dev/null 2>&1")
            .status
            .success()
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "mariadbd on {} did not start: {}",
                node.name,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let pid = check(node.sh("cat /run/mysqld/mysqld.pid"), "reading the pid")
            .trim()
            .parse()
            .unwrap();
        Self { pid, log }
    }

    /// Run SQL as root on `node` and return the tab-separated output (no headers).
    pub fn sql(node: &Node, sql: &str) -> String {
        let out = std::process::Command::new("nsenter")
            .args([
                "-t",
                &node.sshd_pid().to_string(),
                "-m",
                "mariadb",
                "-N",
                "-B",
                "-e",
                sql,
            ])
            .output()
            .unwrap();
        check(out, &format!("SQL on {}: {sql}", node.name))
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status();
        let started = Instant::now();
        while Path::new(&format!("/proc/{}", self.pid)).exists()
            && started.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
