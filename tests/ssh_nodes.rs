//! Nodes over SSH: each a real sshd on its own loopback address and mount namespace.

mod support;

use std::fs;

use support::nodes::Cluster;
use support::*;

fn fill(node_dir: &std::path::Path, seed: u64) {
    fs::create_dir_all(node_dir.join("d1/objects")).unwrap();
    let obj = node_dir.join("d1/objects/obj.data");
    fs::write(&obj, noise(seed, 300_000)).unwrap();
    xattr::set(&obj, "user.swift.metadata", &noise(seed + 1, 1500)).unwrap();
    fs::write(node_dir.join(format!("only-on-{seed}")), b"x").unwrap();
}

#[test]
fn filesystem_backup_of_three_controllers_over_ssh_restores_each_node() {
    let s = Scratch::new();
    let cluster = Cluster::start(
        &s.path("nodes"),
        &["controller-0", "controller-1", "controller-2"],
    );
    for (i, n) in cluster.nodes.iter().enumerate() {
        fill(&n.srv_node, 10 * i as u64 + 1);
    }
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        "[plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n",
    );
    s.init();
    // What each node sees at /srv/node, through its own mount namespace.
    let before: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| record_tree(&n.path("/srv/node")))
        .collect();
    assert_ne!(before[0], before[1], "the nodes must hold different data");
    let out = s.ok(&["backup", "--json"]);
    assert_eq!(
        artifact_fields(&out, "node"),
        ["controller-0", "controller-1", "controller-2"]
    );

    // A drill on one of the nodes, over SSH: every node's archive extracted there under a
    // scratch directory and compared (contents, then xattrs); no node's /srv/node touched.
    let d = summary(&s.ok(&["drill", "--on", "controller-1", "--json"]));
    assert_eq!(d["node"], "controller-1", "{d}");
    assert_eq!(d["drills"][0]["outcome"], "passed", "{d}");
    assert_eq!(d["drills"][0]["checks"].as_array().unwrap().len(), 6, "{d}");
    for (n, b) in cluster.nodes.iter().zip(&before) {
        assert_same_tree(b, &record_tree(&n.path("/srv/node")));
    }

    for n in &cluster.nodes {
        for e in fs::read_dir(&n.srv_node).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                fs::remove_dir_all(p).unwrap()
            } else {
                fs::remove_file(p).unwrap()
            }
        }
    }
    s.ok(&["restore", "latest"]);
    for (n, b) in cluster.nodes.iter().zip(&before) {
        assert_same_tree(b, &record_tree(&n.path("/srv/node")));
    }
}

/// A deployment of `cluster`'s nodes plus `controller-9`, whose address answers nothing, with
/// the filesystem plugin on `/srv/node`; its repository initialised.
fn with_a_dead_controller(s: &Scratch, cluster: &Cluster) {
    let dead = support::nodes::fresh_address();
    let nodes = format!(
        "{}[[node]]\nname = \"controller-9\"\naddress = \"{dead}\"\nport = 2222\nkey = {:?}\nroles = [\"controller\"]\n",
        cluster.deployment_nodes(&["controller"]),
        cluster.key.display().to_string()
    );
    s.deployment_with_nodes(
        &nodes,
        "[plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n",
    );
    s.init();
}

/// A backup whose only node is dead fails and keeps nothing (exit 6); a restore that needs a
/// dead node stops before anything runs, saying how to go on without it.
#[test]
fn an_unreachable_node_fails_before_anything_runs() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    with_a_dead_controller(&s, &cluster);
    let out = s.run(&["backup", "--node", "controller-9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("nothing was backed up") && err.contains("controller-9"),
        "{err}"
    );
    assert_eq!(s.snapshot_count(), 0);
    assert_eq!(s.raw_snapshot_files(), 0);
    s.ok(&["backup", "--node", "controller-0"]);
    let out = s.run(&["restore", "latest"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("this run needs node controller-9")
            && err.contains("unreachable")
            && err.contains("--node"),
        "{err}"
    );
}

/// A dead node the run does not need is never contacted: with it named out (`--node`),
/// backup, restore and validate work on the live node; a dry run without `--node` prints the
/// whole plan and marks the dead node instead of stopping.
#[test]
fn a_dead_node_the_run_does_not_need_stops_nothing() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    let live = &cluster.nodes[0];
    fill(&live.srv_node, 7);
    with_a_dead_controller(&s, &cluster);
    let before = record_tree(&live.path("/srv/node"));

    // Without --node the dead node is needed: a dry run plans without it, and a backup is
    // degraded (exit 8): written from the live node, the dead one recorded missing.
    let plan = s.ok(&["backup", "--dry-run"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("UNREACHABLE controller-9"), "{text}");
    assert!(text.contains("filesystem backup on controller-0"), "{text}");
    let plan = summary(&s.ok(&["backup", "--dry-run", "--json"]));
    assert_eq!(plan["unreachable"][0]["node"], "controller-9", "{plan}");
    assert_eq!(s.snapshot_count(), 0);
    let out = s.run(&["backup"]);
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(
        text.contains("MISSING controller-9") && text.contains("filesystem not backed up there"),
        "{text}"
    );
    assert!(
        err.contains("degraded backup: controller-9 missing"),
        "{err}"
    );
    assert_eq!(s.snapshot_count(), 1);
    // `coffer status` (what a monitoring check calls): the live node backed up just now, the
    // dead one never, with the snapshot that left it out: exit 9.
    let out = s.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(9));
    let status = summary(&out);
    let entry = |node: &str| {
        status["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"] == node)
            .cloned()
            .unwrap_or_else(|| panic!("no {node} in {status}"))
    };
    let (live_e, dead_e) = (entry("controller-0"), entry("controller-9"));
    assert_eq!(
        (&live_e["stale"], &dead_e["stale"]),
        (&false.into(), &true.into())
    );
    assert!(live_e["bytes"].as_u64().unwrap() > 0, "{live_e}");
    assert!(dead_e["last_success"].is_null(), "{dead_e}");
    assert!(
        dead_e["missed_since"]
            .as_str()
            .unwrap()
            .contains("left out of snapshot"),
        "{dead_e}"
    );
    let text = String::from_utf8_lossy(&s.run(&["status"]).stdout).to_string();
    assert!(text.contains("never") && text.contains("STALE"), "{text}");

    // Named out, it is not contacted at all.
    let out = s.ok(&["backup", "--node", "controller-0", "--json"]);
    assert_eq!(artifact_fields(&out, "node"), ["controller-0"]);
    for e in fs::read_dir(&live.srv_node).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            fs::remove_dir_all(p).unwrap()
        } else {
            fs::remove_file(p).unwrap()
        }
    }
    let plan = s.ok(&["restore", "latest", "--dry-run"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("UNREACHABLE controller-9"), "{text}");
    assert!(fs::read_dir(&live.srv_node).unwrap().next().is_none());
    s.ok(&["restore", "latest", "--node", "controller-0"]);
    assert_same_tree(&before, &record_tree(&live.path("/srv/node")));
    s.ok(&["validate", "latest", "--node", "controller-0"]);
}

#[test]
fn host_keys_are_verified_and_new_ones_recorded_only_when_asked() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    fill(&cluster.nodes[0].srv_node, 5);
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        "[plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n",
    );
    s.init();
    // A different key recorded for the node's address: refused, even with --accept-new-host-keys.
    let other = s.path("other_key");
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}",
        other.display()
    ));
    let other_pub = fs::read_to_string(other.with_extension("pub")).unwrap();
    let mut parts = other_pub.split_whitespace();
    let addr = &cluster.nodes[0].address;
    fs::write(
        &cluster.known_hosts,
        format!(
            "[{addr}]:2222 {} {}\n",
            parts.next().unwrap(),
            parts.next().unwrap()
        ),
    )
    .unwrap();
    for extra in [&[][..], &["--accept-new-host-keys"][..]] {
        let mut args = vec!["backup"];
        args.extend_from_slice(extra);
        let out = s.run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(
            err.contains("node controller-0") && err.contains("host key"),
            "{err}"
        );
    }
    // An unknown node: refused unless asked to record it.
    fs::write(&cluster.known_hosts, "").unwrap();
    let out = s.run(&["backup"]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.snapshot_count(), 0);
    s.ok(&["backup", "--accept-new-host-keys"]);
    // Recorded (Debian's ssh hashes host names, so look for a line, not the address) ...
    let recorded = fs::read_to_string(&cluster.known_hosts).unwrap();
    assert_eq!(recorded.lines().count(), 1, "{recorded}");
    // ... and from now on verified strictly.
    s.ok(&["backup"]);
    assert_eq!(s.snapshot_count(), 2);
}

#[test]
fn a_connection_killed_mid_stream_fails_the_run_and_keeps_nothing() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    for i in 0..24u64 {
        fs::write(node.srv_node.join(format!("f{i}")), noise(i, 8 << 20)).unwrap();
    }
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        "[plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n",
    );
    s.init();
    // Once data flows, kill every session process of the node's sshd (the listener stays).
    let child = s.backup_in_flight_with(&["--json"]);
    sh(&format!("pkill -KILL -P {}", node.sshd_pid()));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // A lost node, told apart from a plugin's own failure (4) and a timeout (7).
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("node `controller-0` was lost during plugin `filesystem`'s backup"),
        "{err}"
    );
    // For automation, the error event says where: plugin, node, step.
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        (
            &last["event"],
            &last["exit"],
            &last["plugin"],
            &last["node"],
            &last["step"]
        ),
        (
            &"error".into(),
            &6.into(),
            &"filesystem".into(),
            &"controller-0".into(),
            &"backup".into()
        )
    );
    assert_eq!(s.snapshot_count(), 0, "a cut stream left a snapshot");
    assert_eq!(
        s.raw_snapshot_files(),
        0,
        "a cut stream left restic-level snapshots"
    );
}

#[test]
fn no_secret_appears_in_any_process_arguments() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    for i in 0..8u64 {
        fs::write(
            cluster.nodes[0].srv_node.join(format!("f{i}")),
            noise(i, 8 << 20),
        )
        .unwrap();
    }
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        "[plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n",
    );
    s.init();
    let password = fs::read_to_string(s.path("password"))
        .unwrap()
        .trim()
        .to_string();
    let out = run_watching_argv(s.command(&["backup", "--verbose"]), &password);
    assert!(out.status.success());
}

#[test]
fn the_repository_lives_on_an_external_backup_host() {
    let s = Scratch::new();
    let cluster = Cluster::start(
        &s.path("nodes"),
        &["controller-0", "controller-1", "backup-host"],
    );
    for (i, n) in cluster.nodes[..2].iter().enumerate() {
        fill(&n.srv_node, 100 + i as u64);
    }
    let nodes = cluster.deployment_nodes_by(support::nodes::controllers_and_backup_host);
    let text = format!(
        "name = \"test\"\n\n[repository]\nnode = \"backup-host\"\npath = \"/srv/node/repo\"\n\
         password-file = {:?}\n\n{nodes}\n\
         [plugin.filesystem]\nroles = [\"controller\"]\n[plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n",
        s.path("password").display().to_string()
    );
    fs::write(s.path("deployment.toml"), text).unwrap();
    s.ok(&["init"]);
    let backup_host = &cluster.nodes[2];
    assert!(
        backup_host.path("/srv/node/repo/config").exists(),
        "config is not on the backup host"
    );
    assert!(!s.repo().exists());
    s.ok(&["backup"]);
    support::assert_private(&backup_host.path("/srv/node/repo"));

    let before: Vec<_> = cluster.nodes[..2]
        .iter()
        .map(|n| record_tree(&n.path("/srv/node")))
        .collect();
    let out = s.ok(&["backup", "--json"]);
    // Per controller: the archive and its xattr listing.
    assert_eq!(summary(&out)["artifacts"].as_array().unwrap().len(), 4);
    s.ok(&["check", "--read-data"]);
    for n in &cluster.nodes[..2] {
        fs::remove_dir_all(n.srv_node.join("d1")).unwrap();
    }
    s.ok(&["restore", "latest"]);
    for (n, b) in cluster.nodes[..2].iter().zip(&before) {
        assert_same_tree(b, &record_tree(&n.path("/srv/node")));
    }
}

/// A repository on an SFTP server (restic's `sftp://user@host:port//path`), reached as a login
/// whose shell is `nologin`: only sshd's SFTP subsystem serves it. Init, two backups,
/// `check --read-data`, the first restored exactly (`--delete`), forget + prune, restic itself listing the
/// snapshots over SFTP; every directory and file private; another Coffer host's live lock
/// keeps a backup out (exit 3, naming it) and none is left after a run. A key the server does
/// not take, a port nothing listens on and a host key not in known_hosts are each exit 3.
#[test]
fn a_repository_on_an_sftp_server_reached_by_a_login_without_a_shell() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0", "backup-host"]);
    fill(&cluster.nodes[0].srv_node, 7);
    support::nodes::login_user("coffer-sftp", false);
    let host = &cluster.nodes[1];
    host.sh(
        "usermod -s /usr/sbin/nologin coffer-sftp && mkdir -p /srv/node/coffer-sftp && \
             chown coffer-sftp /srv/node/coffer-sftp",
    );
    let place = format!(
        "sftp://coffer-sftp@{}:{}//srv/node/coffer-sftp/repo",
        host.address,
        support::nodes::SSH_PORT
    );
    let nodes = cluster.deployment_nodes_by(support::nodes::controllers_and_backup_host);
    let text = format!(
        "name = \"test\"\n\n[repository]\npath = {place:?}\nkey = {:?}\npassword-file = {:?}\n\n\
         {nodes}\n[plugin.filesystem]\nroles = [\"controller\"]\n\
         [plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n",
        cluster.key.display().to_string(),
        s.path("password").display().to_string()
    );
    fs::write(s.path("deployment.toml"), text).unwrap();
    s.ok(&["init"]);
    let repo = host.path("/srv/node/coffer-sftp/repo");
    assert!(repo.join("config").exists(), "no config on the SFTP server");
    assert!(!s.repo().exists());
    let before = record_tree(&cluster.nodes[0].path("/srv/node"));
    s.ok(&["backup"]);
    support::assert_private(&repo);
    fill(&cluster.nodes[0].srv_node, 8);
    s.ok(&["backup"]);
    s.ok(&["check", "--read-data"]);
    fs::remove_dir_all(cluster.nodes[0].srv_node.join("d1")).unwrap();
    let first = String::from_utf8(s.ok(&["snapshots", "--json"]).stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    s.ok(&["restore", "--delete", first["id"].as_str().unwrap()]);
    assert_same_tree(&before, &record_tree(&cluster.nodes[0].path("/srv/node")));

    let ssh = format!(
        "ssh -i {} -p {} -o UserKnownHostsFile={} coffer-sftp@{} -s sftp",
        cluster.key.display(),
        support::nodes::SSH_PORT,
        cluster.known_hosts.display(),
        host.address
    );
    let out = std::process::Command::new("restic")
        .args(["-r", &place, "-o", &format!("sftp.command={ssh}")])
        .args(["snapshots", "--no-lock", "--json", "--password-file"])
        .arg(s.path("password"))
        .output()
        .unwrap();
    assert!(out.status.success(), "restic over SFTP: {out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed.as_array().unwrap().len() >= 4, "{listed}");

    let lock = repo.join("coffer-locks/0a1b");
    let at = jiff::Timestamp::now();
    fs::write(
        &lock,
        format!(r#"{{"host":"undercloud-2","pid":4242,"since":"{at}","refreshed":"{at}"}}"#),
    )
    .unwrap();
    let out = s.run(&["backup"]);
    failed_with(
        &out,
        3,
        &["in use by a coffer run on undercloud-2 (pid 4242)"],
    );
    fs::remove_file(&lock).unwrap();
    let done = summary(&s.ok(&["forget", "--keep-last", "1", "--prune", "--json"]));
    assert_eq!(done["forgotten"], 1, "{done}");
    assert_eq!(fs::read_dir(repo.join("coffer-locks")).unwrap().count(), 0);

    // A key the server does not know, a port nothing listens on, a host key not in
    // known_hosts: each exit 3 naming the repository and what to fix.
    let other = s.path("other_key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success());
    let deployment = s.path("deployment.toml");
    let text = fs::read_to_string(&deployment).unwrap();
    let key_line = format!("key = {:?}", cluster.key.display().to_string());
    fs::write(
        &deployment,
        text.replacen(&key_line, &format!("key = {other:?}"), 1),
    )
    .unwrap();
    failed_with(
        &s.run(&["snapshots"]),
        3,
        &[&place, "refuses the credentials", "[repository] key"],
    );
    let port = format!(":{}/", support::nodes::SSH_PORT);
    fs::write(&deployment, text.replace(&port, ":1/")).unwrap();
    failed_with(
        &s.run(&["snapshots"]),
        3,
        &["SFTP server of sftp://coffer-sftp@", "does not answer"],
    );
    fs::write(&deployment, &text).unwrap();
    fs::write(&cluster.known_hosts, "").unwrap();
    failed_with(&s.run(&["snapshots"]), 3, &[&place, "known_hosts"]);
}

#[test]
fn an_ansible_inventory_imports_into_a_deployment_that_backs_up_its_nodes() {
    let s = Scratch::new();
    let cluster = Cluster::start(
        &s.path("nodes"),
        &["overcloud-controller-0", "overcloud-controller-1"],
    );
    for (i, n) in cluster.nodes.iter().enumerate() {
        fill(&n.srv_node, 50 + i as u64);
    }
    let mut ini = String::from("[Controller]\n");
    for n in &cluster.nodes {
        ini.push_str(&format!(
            "{} ansible_host={} ansible_ssh_private_key_file={}\n",
            n.name,
            n.address,
            cluster.key.display()
        ));
    }
    ini.push_str(&format!(
        "\n[Controller:vars]\nansible_user=root\nansible_port={}\n\n[mysql:children]\nController\n",
        support::nodes::SSH_PORT
    ));
    fs::write(s.path("hosts.ini"), ini).unwrap();
    let out = s.ok(&["import-inventory", s.path("hosts.ini").to_str().unwrap()]);
    let imported = String::from_utf8(out.stdout).unwrap();
    assert!(
        imported.contains("roles = [\"controller\", \"mysql\"]"),
        "{imported}"
    );
    // Two hosts in `mysql`: Galera on them (no database runs on these test nodes).
    assert!(
        imported.contains("[plugin.galera]   # group `mysql` has 2 host(s)"),
        "{imported}"
    );
    // The operator's edits: where the repository goes, which paths, the known_hosts file, and
    // Galera off here.
    let edited = imported
        .replace(
            "roles = [\"mysql\"]\n",
            "roles = [\"mysql\"]\nenabled = false\n",
        )
        .replace("/var/backups/coffer", s.repo().to_str().unwrap())
        .replace("/etc/coffer/password", s.path("password").to_str().unwrap())
        + &format!(
            "[plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n\n[ssh]\nknown-hosts = {:?}\n",
            cluster.known_hosts.display().to_string()
        );
    fs::write(s.path("deployment.toml"), edited).unwrap();
    s.init();
    let out = s.ok(&["backup", "--json"]);
    let from = artifact_fields(&out, "node");
    assert_eq!(from, ["overcloud-controller-0", "overcloud-controller-1"]);
    // A broken inventory is refused with its line, and nothing is written.
    fs::write(s.path("bad.ini"), "[Controller]\nctl[1:x]\n").unwrap();
    let out = s.run(&[
        "import-inventory",
        s.path("bad.ini").to_str().unwrap(),
        "-o",
        s.path("bad.toml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2") && err.contains("host range"),
        "{err}"
    );
    assert!(!s.path("bad.toml").exists());
}

#[test]
fn the_temporary_access_key_is_gone_after_success_failure_and_sigint() {
    use support::nodes::AUTHORIZED_KEYS;
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0", "controller-1"]);
    for (i, n) in cluster.nodes.iter().enumerate() {
        fill(&n.srv_node, 70 + i as u64);
    }
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &format!(
            "[access]\ntemporary = true\nfrom = \"127.0.0.1\"\nttl-minutes = 30\n\
             authorized-keys = {AUTHORIZED_KEYS:?}\n\n\
             [plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n"
        ),
    );
    let keys = |n: &support::nodes::Node| fs::read_to_string(&n.authorized_keys).unwrap();
    let original: Vec<String> = cluster.nodes.iter().map(keys).collect();
    let all_back = |when: &str| {
        for (n, o) in cluster.nodes.iter().zip(&original) {
            assert_eq!(&keys(n), o, "{when}: authorized_keys of {} changed", n.name);
        }
    };

    // A run that fails after the key went in (no repository yet).
    let out = s.run(&["backup"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("installed on 2 node(s)"), "{err}");
    assert!(
        err.contains("removed from 2 node(s) and verified gone"),
        "{err}"
    );
    all_back("after a failed run");

    // A run that succeeds, connecting with the run's key (not the operator's).
    s.init();
    let out = s.ok(&["backup"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("verified gone"));
    all_back("after a successful run");
    let operator = String::from_utf8(
        std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(cluster.key.with_extension("pub"))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let operator_fp = operator.split_whitespace().nth(1).unwrap().to_string();
    let log = fs::read_to_string(&cluster.nodes[0].sshd_log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("Accepted publickey") && !l.contains(&operator_fp)),
        "no login with the run's key in:\n{log}"
    );

    // By hand: `access grant` gives a key that logs in; `access revoke` takes it away.
    let out = s.ok(&[
        "access",
        "grant",
        "--ttl-minutes",
        "5",
        "--key-dir",
        s.path("granted").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let id = text.split_whitespace().nth(2).unwrap().to_string();
    let login = |n: &support::nodes::Node| {
        std::process::Command::new("ssh")
            .args([
                "-i",
                s.path("granted/id_ed25519").to_str().unwrap(),
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                cluster.known_hosts.display()
            ))
            .args([
                "-p",
                &support::nodes::SSH_PORT.to_string(),
                &format!("root@{}", n.address),
                "true",
            ])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(
        cluster.nodes.iter().all(login),
        "the granted key must log in:\n{text}"
    );
    let out = s.ok(&["access", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("coffer-access:{id}")));
    s.ok(&["access", "revoke", &id]);
    assert!(
        !cluster.nodes.iter().any(login),
        "the revoked key must not log in"
    );
    all_back("after access revoke");

    // A run interrupted with SIGINT while it holds the key.
    let child = s
        .command(&["backup"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let line = loop {
        if let Some(l) = keys(&cluster.nodes[1])
            .lines()
            .find(|l| l.contains("coffer-access:"))
        {
            break l.to_string();
        }
        assert!(started.elapsed().as_secs() < 30, "the key never appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    sh(&format!("kill -INT {}", child.id()));
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        line.starts_with("from=\"127.0.0.1\",expiry-time=\"")
            && line.contains(",restrict ssh-ed25519 "),
        "{line}"
    );
    all_back("after SIGINT");
    assert_eq!(s.snapshot_count(), 1);
}

#[test]
fn a_node_scoped_plugin_works_on_its_nodes_at_once() {
    // Each node's call waits until every node's call has started: the backup completes only if
    // the host really runs them at the same time (no clock involved).
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-hostile");
    let cluster = Cluster::start(
        &s.path("nodes"),
        &["controller-0", "controller-1", "controller-2"],
    );
    let barrier = s.path("barrier");
    fs::create_dir_all(&barrier).unwrap();
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &format!(
            "[plugin.hostile.grant]\ncommands = [\"sh -c **\"]\n\n[plugin.hostile.settings]\n\
             mode = \"barrier\"\ndir = {:?}\ncount = 3\n",
            barrier.display().to_string()
        ),
    );
    s.init();
    let out = s.ok(&["backup", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("one call per node on 3 nodes, 3 at a time"),
        "{text}"
    );
    let mut arrived: Vec<String> = fs::read_dir(&barrier)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    arrived.sort();
    assert_eq!(arrived, ["controller-0", "controller-1", "controller-2"]);
    let described = s.ok(&["plugins", "describe", "hostile"]);
    assert!(String::from_utf8_lossy(&described.stdout).contains("nodes in parallel: backup"));

    // With one node at a time ([ssh] parallel = 1) the same barrier can never be reached:
    // the first call gives up, and the run fails cleanly.
    for e in fs::read_dir(&barrier).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let text = fs::read_to_string(s.path("deployment.toml")).unwrap();
    fs::write(
        s.path("deployment.toml"),
        text.replacen("[ssh]\n", "[ssh]\nparallel = 1\n", 1) + "tries = 10\n",
    )
    .unwrap();
    let out = s.run(&["backup"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.snapshot_count(), 1);

    // The same with at most two members at once (`members-down`): never three at the barrier.
    for e in fs::read_dir(&barrier).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    s.edit_deployment("[ssh]\nparallel = 1\n", "[ssh]\n");
    let text = fs::read_to_string(s.path("deployment.toml")).unwrap();
    fs::write(
        s.path("deployment.toml"),
        text + "\n[plugin.hostile]\nmembers-down = 2\n",
    )
    .unwrap();
    let out = s.run(&["backup", "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("one call per node on 3 nodes, 2 at a time"),
        "{text}"
    );
    assert_eq!(s.snapshot_count(), 1);
}

#[test]
fn presets_nodes_and_roles_limit_a_run() {
    let s = Scratch::new();
    let cluster = Cluster::start(
        &s.path("nodes"),
        &["undercloud", "controller-0", "controller-1"],
    );
    for (i, n) in cluster.nodes.iter().enumerate() {
        fill(&n.srv_node, 200 + i as u64);
    }
    s.deployment_with_nodes(
        &cluster.deployment_nodes_by(|n| {
            if n == "undercloud" {
                vec!["undercloud"]
            } else {
                vec!["controller"]
            }
        }),
        "[plugin.filesystem]\nroles = [\"undercloud\", \"controller\"]\n\
         [plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n",
    );
    s.init();
    let out = s.ok(&["backup", "--controllers", "--json"]);
    assert_eq!(
        artifact_fields(&out, "node"),
        ["controller-0", "controller-1"]
    );
    let out = s.ok(&["backup", "--undercloud", "--json"]);
    assert_eq!(artifact_fields(&out, "node"), ["undercloud"]);
    let out = s.ok(&["backup", "--node", "controller-1", "--json"]);
    assert_eq!(artifact_fields(&out, "node"), ["controller-1"]);
    let out = s.run(&["backup", "--role", "compute"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node carries role `compute`"));

    // A whole backup, then only controller-1 restored.
    let before: Vec<_> = cluster
        .nodes
        .iter()
        .map(|n| record_tree(&n.path("/srv/node")))
        .collect();
    s.ok(&["backup"]);
    for n in &cluster.nodes {
        fs::remove_dir_all(n.srv_node.join("d1")).unwrap();
    }
    s.ok(&["restore", "latest", "--node", "controller-1"]);
    assert_same_tree(
        &before[2],
        &record_tree(&cluster.nodes[2].path("/srv/node")),
    );
    assert!(
        !cluster.nodes[0].srv_node.join("d1").exists(),
        "undercloud was not in the run"
    );
    assert!(
        !cluster.nodes[1].srv_node.join("d1").exists(),
        "controller-0 was not in the run"
    );
    s.ok(&[
        "validate",
        "latest",
        "--role",
        "controller",
        "--node",
        "controller-1",
    ]);
}

/// TripleO and kolla log in as an unprivileged user: with `become = "sudo"` every command runs
/// through `sudo -n`, so files only root can read are backed up and restored with their owners
/// and modes; without it the same run is refused by the node; a login user without
/// password-less sudo is stopped before anything runs, naming the node and the sudoers line.
#[test]
fn a_non_root_login_backs_up_and_restores_root_only_files_through_sudo() {
    support::nodes::login_user("coffer-op", true);
    support::nodes::login_user("coffer-nosudo", false);
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    cluster.allow_other_logins();
    let node = &cluster.nodes[0];
    fs::create_dir_all(node.srv_node.join("keys")).unwrap();
    fs::write(node.srv_node.join("keys/fernet-0"), noise(5, 44)).unwrap();
    sh(&format!(
        "chmod 0700 {d}/keys && chmod 0600 {d}/keys/fernet-0 && chown -R 0:0 {d}/keys",
        d = node.srv_node.display()
    ));
    let before = record_tree(&node.path("/srv/node"));
    let nodes = cluster
        .deployment_nodes(&["controller"])
        .replace("user = \"root\"", "user = \"coffer-op\"")
        .replacen("[ssh]\n", "[ssh]\nbecome = \"sudo\"\n", 1);
    s.deployment_with_nodes(
        &nodes,
        "[plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n",
    );
    s.init();
    s.ok(&["backup"]);
    fs::remove_dir_all(node.srv_node.join("keys")).unwrap();
    s.ok(&["restore", "latest"]);
    assert_same_tree(&before, &record_tree(&node.path("/srv/node")));

    // The same login without escalation on this node: the node refuses to read the keys.
    s.edit_deployment("roles = [", "become = \"none\"\nroles = [");
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(s.snapshot_count(), 1);

    // A login without password-less sudo: stopped before anything runs.
    s.edit_deployment("become = \"none\"\n", "");
    s.edit_deployment("user = \"coffer-op\"", "user = \"coffer-nosudo\"");
    for args in [&["backup"][..], &["restore", "latest"][..]] {
        let out = s.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{err}");
        assert!(
            err.contains(
                "node controller-0: login user `coffer-nosudo` cannot run commands as `root`"
            ) && err
                .contains("add `coffer-nosudo ALL=(root) NOPASSWD: ALL` to /etc/sudoers.d/coffer"),
            "{err}"
        );
    }
    assert_eq!(s.snapshot_count(), 1);
    assert_same_tree(&before, &record_tree(&node.path("/srv/node")));

    // Only "sudo" and "none" are ways to gain privileges.
    s.edit_deployment("become = \"sudo\"", "become = \"su\"");
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("ssh.become") && err.contains("`su`"), "{err}");

    // Escalation for a role (`[role.controller]`) instead of every node; and temporary access
    // through the non-root login: the run's key goes into that user's own authorized_keys
    // (never through sudo), the run works over it, and it is gone afterwards.
    s.edit_deployment("become = \"su\"\n", "");
    s.edit_deployment("user = \"coffer-nosudo\"", "user = \"coffer-op\"");
    let text = fs::read_to_string(s.path("deployment.toml")).unwrap();
    fs::write(
        s.path("deployment.toml"),
        format!(
            "{text}\n[role.controller]\nbecome = \"sudo\"\n\n\
             [access]\ntemporary = true\nfrom = \"127.0.0.1\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::MetadataExt;
    let own_keys = std::path::Path::new("/home/coffer-op/.ssh/authorized_keys");
    let _ = fs::remove_file(own_keys);
    s.ok(&["backup"]);
    assert_eq!(s.snapshot_count(), 2);
    let meta = fs::metadata(own_keys).expect("the key went into coffer-op's authorized_keys");
    let owner = String::from_utf8(
        std::process::Command::new("id")
            .args(["-u", "coffer-op"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(meta.uid().to_string(), owner.trim());
    let left = fs::read_to_string(own_keys).unwrap();
    assert!(!left.contains("coffer-access:"), "{left}");
}
