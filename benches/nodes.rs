//! Wall time of a filesystem backup of three SSH nodes with Coffer, against the talk's method
//! (`ssh node tar --xattrs -c … > file`, node by node), on the same data in the same run.
//! Run as root: `cargo bench -p coffer --bench nodes`. Prints; asserts nothing about time.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::Instant;

use support::nodes::{Cluster, SSH_PORT};
use support::*;

fn main() {
    let mib: u64 = std::env::var("COFFER_BENCH_NODE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let s = Scratch::new();
    let cluster = Cluster::start(
        &s.path("nodes"),
        &[
            "controller-0",
            "controller-1",
            "controller-2",
            "backup-host",
        ],
    );
    for (n, node) in cluster.nodes[..3].iter().enumerate() {
        for i in 0..mib / 16 {
            let data = if i % 4 == 3 {
                // Text-like, compressible.
                "INSERT INTO t VALUES (1,'abc','host-1');\n"
                    .repeat((16 << 20) / 41)
                    .into_bytes()
            } else {
                noise(n as u64 * 1000 + i, 16 << 20)
            };
            std::fs::write(node.srv_node.join(format!("f{i}")), data).unwrap();
        }
    }
    let nodes = cluster.deployment_nodes_by(support::nodes::controllers_and_backup_host);
    let plugins = "[plugin.filesystem]\nroles = [\"controller\"]\n[plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n";
    s.deployment_with_nodes(&nodes, plugins);
    s.init();
    let total = mib * 3;

    let t = Instant::now();
    s.ok(&["backup"]);
    let coffer = t.elapsed().as_secs_f64();

    // The same into a repository on the backup host.
    let remote = s.deployment_with_nodes(&nodes, plugins);
    let text = std::fs::read_to_string(&remote).unwrap().replacen(
        "[repository]\n",
        "[repository]\nnode = \"backup-host\"\n",
        1,
    );
    let text = text.replace(
        &format!("path = \"{}\"", s.repo().display()),
        "path = \"/srv/node/repo\"",
    );
    std::fs::write(&remote, text).unwrap();
    s.ok(&["init"]);
    let t = Instant::now();
    s.ok(&["backup"]);
    let coffer_remote = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for node in &cluster.nodes[..3] {
        sh(&format!(
            "ssh -q -i {} -p {SSH_PORT} -o UserKnownHostsFile={} root@{} \
             tar -C / -cf - --xattrs --xattrs-include='*' --acls srv/node > {}",
            cluster.key.display(),
            cluster.known_hosts.display(),
            node.address,
            s.path(&format!("{}.tar", node.name)).display()
        ));
    }
    let tar_ssh = t.elapsed().as_secs_f64();

    println!("3 nodes x {mib} MiB over SSH (loopback), same run:");
    println!(
        "  coffer backup (dedup, zstd, encrypted):   {coffer:6.1} s  {:6.1} MiB/s",
        total as f64 / coffer
    );
    println!(
        "  coffer backup into the backup host:       {coffer_remote:6.1} s  {:6.1} MiB/s",
        total as f64 / coffer_remote
    );
    println!(
        "  ssh tar --xattrs > file, node by node:    {tar_ssh:6.1} s  {:6.1} MiB/s",
        total as f64 / tar_ssh
    );
}
