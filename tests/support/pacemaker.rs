//! A real one-node corosync/pacemaker cluster on a test node, started without systemd (through
//! the `systemctl` stand-in) in the node's mount namespace, with its own `/etc/corosync`,
//! `/var/lib/corosync` and `/var/lib/pacemaker`. Pacemaker's IPC uses abstract sockets, which
//! are per network namespace, and corosync finds its own node by an address configured on an
//! interface (127.0.0.1 here): one such cluster runs on the machine at a time.

use std::sync::Mutex;

use super::nodes::Node;

/// Serialises the tests that run a cluster.
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A running cluster; stopped when dropped.
pub struct Pacemaker<'n> {
    node: &'n Node,
}

fn check(out: std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl<'n> Pacemaker<'n> {
    /// Configure corosync for `node` alone and start corosync and pacemaker; STONITH is off.
    pub fn start(node: &'n Node) -> Self {
        super::systemctl::install(node);
        super::sh(&format!(
            "cp -a /etc/corosync/uidgid.d {} 2>/dev/null || true",
            node.own("/etc/corosync").display()
        ));
        std::fs::write(
            node.own("/etc/corosync").join("corosync.conf"),
            format!(
                "totem {{\n version: 2\n cluster_name: coffer-test\n crypto_cipher: none\n \
                 crypto_hash: none\n}}\nnodelist {{\n node {{\n  name: {}\n  nodeid: 1\n  \
                 ring0_addr: 127.0.0.1\n }}\n}}\nquorum {{\n provider: corosync_votequorum\n}}\n\
                 logging {{\n to_logfile: yes\n logfile: /var/lib/corosync/corosync.log\n \
                 to_syslog: no\n to_stderr: no\n}}\n",
                node.name
            ),
        )
        .unwrap();
        let out = node.sh(
            "for d in cib pengine blackbox cores; do mkdir -p /var/lib/pacemaker/$d; done && \
             chown -R hacluster:haclient /var/lib/pacemaker && \
             /usr/local/sbin/systemctl start corosync && sleep 1 && \
             /usr/local/sbin/systemctl start pacemaker && \
             pcs property set stonith-enabled=false",
        );
        assert!(
            out.status.success(),
            "starting corosync and pacemaker: {out:?}\n{}",
            String::from_utf8_lossy(
                &node
                    .sh("tail -20 /var/lib/corosync/corosync.log /var/lib/corosync/*.out; crm_mon -1")
                    .stdout
            )
        );
        Self { node }
    }

    /// Run a shell command in the node's namespace (pcs, crm_mon, cibadmin …).
    pub fn sh(&self, script: &str) -> String {
        check(self.node.sh(script), script)
    }

    /// The CIB's configuration section.
    pub fn configuration(&self) -> String {
        self.sh("cibadmin --query --scope configuration")
    }
}

impl Drop for Pacemaker<'_> {
    fn drop(&mut self) {
        let _ = self.node.sh(
            "/usr/local/sbin/systemctl stop pacemaker; /usr/local/sbin/systemctl stop corosync",
        );
    }
}
