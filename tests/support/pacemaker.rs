//! A real one-node corosync/pacemaker cluster on a test node, started without systemd (through
//! the `systemctl` stand-in) in the node's mount namespace, with its own `/etc/corosync`,
//! `/var/lib/corosync` and `/var/lib/pacemaker`. Pacemaker's IPC uses abstract sockets, which
//! are per network namespace, and corosync finds its own node by an address configured on an
//! interface (127.0.0.1 here): on nodes that share this machine's network and PID namespaces,
//! one such cluster runs at a time. On isolated nodes
//! ([`Cluster::start_isolated`](super::nodes::Cluster)) each has its own, so clusters (of one
//! node or several, each member on its own address) run side by side.

use super::nodes::Node;

/// A running cluster; stopped when dropped.
pub struct Pacemaker<'n> {
    nodes: Vec<&'n Node>,
}

fn check(out: std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl<'n> Pacemaker<'n> {
    /// Configure corosync for `node` alone (on 127.0.0.1) and start corosync and pacemaker;
    /// STONITH is off.
    pub fn start(node: &'n Node) -> Self {
        Self::cluster(&[node], |_| "127.0.0.1".into())
    }

    /// A cluster of `nodes`, each on its own address (isolated nodes); every member online.
    pub fn start_cluster(nodes: &'n [Node]) -> Self {
        let members: Vec<&Node> = nodes.iter().collect();
        Self::cluster(&members, |n| n.address.clone())
    }

    fn cluster(nodes: &[&'n Node], ring_address: impl Fn(&Node) -> String) -> Self {
        let mut list = String::new();
        for (i, n) in nodes.iter().enumerate() {
            list.push_str(&format!(
                " node {{\n  name: {}\n  nodeid: {}\n  ring0_addr: {}\n }}\n",
                n.name,
                i + 1,
                ring_address(n)
            ));
        }
        let conf = format!(
            "totem {{\n version: 2\n cluster_name: coffer-test\n crypto_cipher: none\n \
             crypto_hash: none\n}}\nnodelist {{\n{list}}}\nquorum {{\n provider: corosync_votequorum\n}}\n\
             logging {{\n to_logfile: yes\n logfile: /var/lib/corosync/corosync.log\n \
             to_syslog: no\n to_stderr: no\n}}\n"
        );
        for node in nodes {
            super::systemctl::install(node);
            super::sh(&format!(
                "cp -a /etc/corosync/uidgid.d {} 2>/dev/null || true",
                node.own("/etc/corosync").display()
            ));
            std::fs::write(node.own("/etc/corosync").join("corosync.conf"), &conf).unwrap();
            let out = node.sh(
                "for d in cib pengine blackbox cores; do mkdir -p /var/lib/pacemaker/$d; done && \
                 chown -R hacluster:haclient /var/lib/pacemaker && \
                 /usr/local/sbin/systemctl start corosync",
            );
            assert!(out.status.success(), "starting corosync: {out:?}");
        }
        // Every member's pacemaker at once: each start waits for a quorate partition.
        std::thread::scope(|s| {
            for node in nodes {
                s.spawn(move || {
                    let out = node.sh("sleep 1 && /usr/local/sbin/systemctl start pacemaker");
                    assert!(
                        out.status.success(),
                        "starting pacemaker on {}: {out:?}\n{}",
                        node.name,
                        String::from_utf8_lossy(
                            &node
                                .sh("tail -20 /var/lib/corosync/corosync.log /var/lib/corosync/*.out; crm_mon -1")
                                .stdout
                        )
                    );
                });
            }
        });
        let cluster = Self {
            nodes: nodes.to_vec(),
        };
        cluster.sh("pcs property set stonith-enabled=false");
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        cluster.sh(&format!(
            "i=0; until crm_mon -1 | grep -q 'Online: \\[ {} \\]'; do \
             i=$((i+1)); [ $i -lt 600 ] || {{ crm_mon -1; exit 1; }}; sleep 0.1; done",
            names.join(" ")
        ));
        cluster
    }

    /// Run a shell command on the first member (pcs, crm_mon, cibadmin …).
    pub fn sh(&self, script: &str) -> String {
        self.sh_on(0, script)
    }

    /// Run a shell command on member `i`.
    pub fn sh_on(&self, i: usize, script: &str) -> String {
        check(self.nodes[i].sh(script), script)
    }

    /// The CIB's configuration section, as the first member has it.
    pub fn configuration(&self) -> String {
        self.configuration_on(0)
    }

    /// The CIB's configuration section, as member `i` has it.
    pub fn configuration_on(&self, i: usize) -> String {
        self.sh_on(i, "cibadmin --query --local --scope configuration")
    }
}

impl Drop for Pacemaker<'_> {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = node.sh("/usr/local/sbin/systemctl stop pacemaker");
        }
        for node in &self.nodes {
            let _ = node.sh("/usr/local/sbin/systemctl stop corosync");
        }
    }
}
