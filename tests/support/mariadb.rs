//! A real MariaDB server on a test node, started without systemd inside the node's mount
//! namespace: its datadir (`/srv/db/mysql`), config (`/srv/db/my.cnf`) and socket directory
//! (`/run/mysqld`) are the node's own. systemd cannot run here, so each node gets a
//! `systemctl` stand-in in its own `/usr/local/sbin` that starts and stops this real mariadbd
//! (`systemctl start|stop mariadb`), as a plugin would on a real node.

use std::path::Path;
use std::time::{Duration, Instant};

use super::nodes::Node;

/// The node's datadir.
pub const DATADIR: &str = "/srv/db/mysql";

const SYSTEMCTL: &str = r#"#!/bin/sh
# Test stand-in for systemd's systemctl: starts and stops this node's real mariadbd.
set -u
ping() { mariadb-admin ping >/dev/null 2>&1; }
case "$1 ${2:-}" in
"start mariadb")
    ping && exit 0
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    setsid mariadbd --defaults-file=/srv/db/my.cnf </dev/null >/dev/null 2>&1 &
    i=0; until ping; do i=$((i+1)); [ $i -lt 600 ] || exit 1; sleep 0.1; done ;;
"stop mariadb")
    [ -f /run/mysqld/mysqld.pid ] || exit 0
    pid=$(cat /run/mysqld/mysqld.pid)
    kill "$pid" 2>/dev/null || exit 0
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done ;;
"is-active mariadb") ping ;;
*) echo "systemctl (test stand-in): unsupported: $*" >&2; exit 1 ;;
esac
"#;

/// A MariaDB server on a node; stopped when dropped.
pub struct Mariadb {
    run_dir: std::path::PathBuf,
    /// Its error log (host path).
    pub log: std::path::PathBuf,
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
    /// Install the `systemctl` stand-in and MariaDB's config on `node`, create a fresh datadir
    /// and start the server, listening on the node's address; root logs in through the socket.
    pub fn start(node: &Node) -> Self {
        let sbin = node.own("/usr/local/sbin").join("systemctl");
        std::fs::write(&sbin, SYSTEMCTL).unwrap();
        super::sh(&format!("chmod 755 {}", sbin.display()));
        let log = node.own("/srv/db").join("error.log");
        std::fs::write(
            node.own("/srv/db").join("my.cnf"),
            format!(
                "[mysqld]\nuser=mysql\ndatadir={DATADIR}\nsocket=/run/mysqld/mysqld.sock\n\
                 pid-file=/run/mysqld/mysqld.pid\nbind-address={}\nport=3306\nskip-name-resolve\n\
                 log-error=/srv/db/error.log\ninnodb_buffer_pool_size=64M\n",
                node.address
            ),
        )
        .unwrap();
        check(
            node.sh(&format!(
                "mkdir -p {DATADIR} && touch /srv/db/error.log && \
                 chown -R mysql:mysql /srv/db /run/mysqld && \
                 mariadb-install-db --user=mysql --datadir={DATADIR} --skip-test-db >/dev/null 2>&1 && \
                 /usr/local/sbin/systemctl start mariadb"
            )),
            "creating and starting MariaDB",
        );
        Self {
            run_dir: node.own("/run/mysqld"),
            log,
        }
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
        // The server may have been restarted (by a restore): stop whichever runs now.
        let Ok(pid) = std::fs::read_to_string(self.run_dir.join("mysqld.pid")) else {
            return;
        };
        let pid = pid.trim().to_string();
        let _ = std::process::Command::new("kill").arg(&pid).status();
        let started = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists()
            && started.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
