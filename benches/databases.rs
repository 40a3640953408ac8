//! Wall time of the galera plugin on a real 3-member cluster against plain `mysqldump | zstd >
//! file` and `zstd -dc file | mysql`, on the same cluster and data in the same run.
//! Run as root: `cargo bench -p coffer --bench databases` (`COFFER_BENCH_ROWS`, default 1M).
//! Prints; asserts nothing about time.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::Instant;

use support::mariadb::{DATADIR, Mariadb};
use support::nodes::{Cluster, SSH_PORT};
use support::*;

fn main() {
    let rows: u64 = std::env::var("COFFER_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let s = Scratch::new();
    let cluster = Cluster::start(
        &s.path("nodes"),
        &["controller-0", "controller-1", "controller-2"],
    );
    let nodes: Vec<_> = cluster.nodes.iter().collect();
    let _dbs = Mariadb::galera(&nodes);
    Mariadb::sql(
        nodes[0],
        &format!(
            "CREATE DATABASE nova; USE nova; \
             CREATE TABLE instances (id INT PRIMARY KEY, uuid CHAR(32), host VARCHAR(64), \
             vcpus INT, meta TEXT); \
             INSERT INTO instances SELECT seq, MD5(seq), CONCAT('compute-', seq % 97), seq % 16, \
             REPEAT(CHAR(97 + seq % 26), seq % 200) FROM seq_1_to_{rows};"
        ),
    );
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &format!("[plugin.galera.settings]\ndatadir = {DATADIR:?}\n"),
    );
    s.init();

    // The backup's events as they come, with the time since its start: where it spends it.
    let t = Instant::now();
    let mut run = s
        .command(&["backup", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let events = std::io::BufReader::new(run.stdout.take().unwrap());
    for line in std::io::BufRead::lines(events) {
        let line = line.unwrap();
        let shown: String = line.chars().take(150).collect();
        println!("  {:6.2} s  {shown}", t.elapsed().as_secs_f64());
    }
    assert!(run.wait().unwrap().success(), "coffer backup failed");
    let coffer_backup = t.elapsed().as_secs_f64();

    let ssh = |node: &support::nodes::Node| {
        format!(
            "ssh -q -i {} -p {SSH_PORT} -o UserKnownHostsFile={} root@{}",
            cluster.key.display(),
            cluster.known_hosts.display(),
            node.address
        )
    };
    let file = s.path("dump.sql.zst");
    let t = Instant::now();
    sh(&format!(
        "{} mysqldump --opt --single-transaction --all-databases \
         --ignore-table=mysql.wsrep_streaming_log | zstd -q -o {}",
        ssh(nodes[1]),
        file.display()
    ));
    let plain_backup = t.elapsed().as_secs_f64();

    let t = Instant::now();
    s.ok(&["restore", "latest"]);
    let coffer_restore = t.elapsed().as_secs_f64();

    Mariadb::sql(nodes[0], "DROP DATABASE nova");
    let t = Instant::now();
    sh(&format!(
        "zstd -dc {} | {} mysql",
        file.display(),
        ssh(nodes[0])
    ));
    let plain_restore = t.elapsed().as_secs_f64();

    println!("galera, 3 members, {rows} rows (same cluster, same run):");
    println!(
        "  coffer backup (idle member, streamed, dedup, zstd, encrypted): {coffer_backup:6.1} s"
    );
    println!(
        "  ssh mysqldump | zstd > file:                                  {plain_backup:6.1} s"
    );
    println!(
        "  coffer restore (block, stop, new datadirs, bootstrap, import, 2 SST joins, unblock, validate): {coffer_restore:6.1} s"
    );
    println!(
        "  zstd -dc file | ssh mysql (import into the running cluster):  {plain_restore:6.1} s"
    );
}
