//! Wall time of a filesystem backup of three SSH nodes, first and after 1% of each node's data
//! changed: Coffer against restic run on each node over SSH (`ssh node restic backup` into one
//! repository on the backup host, reached by SFTP; the three nodes at once) and against the
//! classic loop (`ssh node tar … | zstd > file`, node by node), on the same data in the same run.
//! Run as root: `cargo bench -p coffer --bench nodes` (`COFFER_BENCH_NODE_MIB`, default 1024 a
//! node). Prints; asserts nothing about time.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::process::Command;
use std::time::Instant;

use support::nodes::{Cluster, SSH_PORT};
use support::*;

fn main() {
    let mib: u64 = std::env::var("COFFER_BENCH_NODE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
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

    // restic on each node, into one repository on the backup host over SFTP.
    let backup_host = &cluster.nodes[3];
    let ssh = format!(
        "ssh -q -i {} -p {SSH_PORT} -o UserKnownHostsFile={}",
        cluster.key.display(),
        cluster.known_hosts.display()
    );
    let password = s.path("restic-password");
    std::fs::write(&password, "bench\n").unwrap();
    let restic = format!(
        "restic -r sftp:root@{0}:/srv/node/restic -o sftp.command='{ssh} root@{0} -s sftp' \
         --password-file {1} -q",
        backup_host.address,
        password.display()
    );
    sh(&format!("{restic} init >/dev/null"));
    let restic_nodes = || {
        let t = Instant::now();
        let runs: Vec<_> = cluster.nodes[..3]
            .iter()
            .map(|node| {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!(
                    "{ssh} root@{} \"{restic} backup --host {} /srv/node\"",
                    node.address, node.name
                ));
                c.spawn().unwrap()
            })
            .collect();
        for mut run in runs {
            assert!(
                run.wait().unwrap().success(),
                "restic backup on a node failed"
            );
        }
        t.elapsed().as_secs_f64()
    };
    let tar_nodes = |round: &str| {
        let t = Instant::now();
        for node in &cluster.nodes[..3] {
            sh(&format!(
                "{ssh} root@{} tar -C / -cf - --xattrs --xattrs-include='*' --acls srv/node \
                 | zstd -q -T0 -3 > {}",
                node.address,
                s.path(&format!("{}-{round}.tar.zst", node.name)).display()
            ));
        }
        t.elapsed().as_secs_f64()
    };
    let restic_first = restic_nodes();
    let tar_first = tar_nodes("first");

    // 1% of each node's bytes overwritten in place, 1 MiB at a time, spread over its files.
    for (n, node) in cluster.nodes[..3].iter().enumerate() {
        use std::io::{Seek, Write};
        let files = mib / 16;
        for i in 0..(mib / 100).max(1) {
            let path = node.srv_node.join(format!("f{}", (i * 7) % files));
            let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.seek(std::io::SeekFrom::Start((i * 5 % 15) << 20))
                .unwrap();
            f.write_all(&noise(90_000 + n as u64 * 1000 + i, 1 << 20))
                .unwrap();
        }
    }
    s.deployment_with_nodes(&nodes, plugins);
    let t = Instant::now();
    s.ok(&["backup"]);
    let coffer_again = t.elapsed().as_secs_f64();
    let restic_again = restic_nodes();
    let tar_again = tar_nodes("again");

    let rate = |secs: f64| total as f64 / secs;
    println!("3 nodes x {mib} MiB over SSH (loopback), same run:");
    println!("                                           first backup          after 1% changed");
    let row = |what: &str, first: f64, again: f64| {
        println!(
            "  {what:<40} {first:6.1} s {:6.1} MiB/s   {again:6.1} s",
            rate(first)
        )
    };
    row("coffer backup", coffer, coffer_again);
    println!(
        "  {:<40} {coffer_remote:6.1} s {:6.1} MiB/s",
        "coffer backup into the backup host",
        rate(coffer_remote)
    );
    row(
        "ssh node restic backup (sftp), 3 at once",
        restic_first,
        restic_again,
    );
    row(
        "ssh node tar | zstd > file, node by node",
        tar_first,
        tar_again,
    );
    println!(
        "coffer against restic: first backup {:.2}x its throughput, re-run {:.2}x its time; \
         against the tar loop: {:.2}x and {:.2}x",
        restic_first / coffer,
        coffer_again / restic_again,
        tar_first / coffer,
        coffer_again / tar_again
    );
}
