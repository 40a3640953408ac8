//! The database plugins against a real MariaDB server on an SSH test node.

mod support;

use support::mariadb::{DATADIR, Mariadb, SCHEMA, state_by};
use support::nodes::Cluster;
use support::*;

/// Everything the test compares: checksums, grants, the view and the procedure.
fn state(node: &support::nodes::Node) -> String {
    state_by(|q| Mariadb::sql(node, q))
}

#[test]
fn mysql_round_trip_on_the_undercloud_keeps_tables_grants_views_and_routines() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["undercloud"]);
    let node = &cluster.nodes[0];
    let _db = Mariadb::start(node);
    Mariadb::sql(node, SCHEMA);
    // Credentials from the deployment file, for a backup account (not root).
    Mariadb::sql(
        node,
        "CREATE USER 'coffer'@'localhost' IDENTIFIED BY 'Pw-0f-the-b4ckup-user'; \
         GRANT SELECT, RELOAD, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER, PROCESS ON *.* \
         TO 'coffer'@'localhost'",
    );
    let deployment = |password: &str| {
        s.deployment_with_nodes(
            &cluster.deployment_nodes(&["undercloud"]),
            &format!(
                "[plugin.mysql.settings]\ndatadir = {DATADIR:?}\nuser = \"coffer\"\n\
                 password = {password:?}\n"
            ),
        )
    };
    deployment("wrong");
    s.init();
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("Access denied for user 'coffer'"), "{err}");
    deployment("Pw-0f-the-b4ckup-user");
    let before = state(node);
    assert!(
        before.contains("GRANT SELECT, INSERT, UPDATE ON `nova`.*"),
        "{before}"
    );

    let out = run_watching_argv(
        s.command(&["backup", "--json", "--verbose"]),
        "Pw-0f-the-b4ckup-user",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        node.sh("ls /run/coffer-mysql-* 2>/dev/null")
            .stdout
            .is_empty(),
        "the option file with the password is left on the node"
    );
    let names = artifact_fields(&out, "name");
    assert_eq!(names, ["databases.sql", "grants.sql"]);
    s.ok(&["validate", "latest"]);

    // A drill: the dump into a throwaway server on this machine (its datadir and socket in a
    // scratch directory), every table's checksum as at backup; the live server untouched.
    let scratch = s.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let out = s.ok(&["drill", "--scratch", scratch.to_str().unwrap(), "--json"]);
    let d = summary(&out);
    assert_eq!(d["drills"][0]["outcome"], "passed", "{d}");
    let checks = d["drills"][0]["checks"].as_array().unwrap();
    assert!(
        checks.len() > 2
            && checks.iter().any(|c| c["name"]
                .as_str()
                .unwrap()
                .starts_with("table `nova`.`instances`")),
        "{d}"
    );
    assert_eq!(state(node), before, "the drill changed the live server");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    // Lose the data: a changed row is caught by validate, then everything is dropped.
    Mariadb::sql(node, "UPDATE nova.instances SET vcpus = 99 WHERE id = 7");
    let out = s.run(&["validate", "latest"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Mariadb::sql(
        node,
        "DROP DATABASE nova; DROP DATABASE keystone; DROP USER 'nova'@'%'",
    );

    // The talk's runbook: a new datadir; the old one is moved aside, never deleted.
    s.ok(&["restore", "latest"]);
    assert_eq!(state(node), before);
    let kept: Vec<_> = std::fs::read_dir(node.own("/srv/db"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("mysql.before-restore-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        !node.own("/srv/db").join(&kept[0]).join("nova").exists(),
        "the old datadir is the one without nova (it was dropped)"
    );
    // The password never went on a command line: the dump holds only its hash.
    let grants = Mariadb::sql(node, "SHOW GRANTS FOR 'nova'@'%'");
    assert!(!grants.contains("n0va-secret"));

    // The whole datadir lost, the server down: restore from nothing.
    let out = node.sh(&format!(
        "/usr/local/sbin/systemctl stop mariadb && rm -rf {DATADIR}"
    ));
    assert!(out.status.success());
    s.ok(&["restore", "latest"]);
    assert_eq!(state(node), before);

    // A restore that fails after the datadir was moved (the dump in the repository is damaged)
    // puts the previous datadir back and leaves the server running on it.
    Mariadb::sql(
        node,
        "INSERT INTO nova.instances VALUES (100001, 'x', 'late', 1)",
    );
    let current = state(node);
    s.corrupt_largest_pack();
    let out = s.run(&["restore", "latest"]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    let report = String::from_utf8_lossy(&out.stdout).to_string() + &err;
    for step in [
        "undone on undercloud: stop the restored server",
        "undone on undercloud: keep the failed datadir",
        "undone on undercloud: put the previous datadir back",
        "undone on undercloud: start the server again",
    ] {
        assert!(report.contains(step), "{step}: {report}");
    }
    assert_eq!(state(node), current);
    assert!(std::fs::read_dir(node.own("/srv/db")).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("mysql.failed-restore-")
    }));
}

/// [`state`] as a member sees it once it has applied everything the cluster committed.
fn synced_state(node: &support::nodes::Node) -> String {
    Mariadb::sql(node, "SET GLOBAL wsrep_sync_wait = 1");
    let s = state(node);
    Mariadb::sql(node, "SET GLOBAL wsrep_sync_wait = 0");
    s
}

#[test]
fn galera_backup_from_an_idle_member_restores_a_cluster_from_nothing() {
    let _turn = support::mariadb::one_galera_at_a_time();
    let s = Scratch::new();
    let cluster = Cluster::start(
        &s.path("nodes"),
        &["controller-0", "controller-1", "controller-2"],
    );
    let nodes: Vec<_> = cluster.nodes.iter().collect();
    let _dbs = Mariadb::galera(&nodes);
    // As in TripleO, Pacemaker manages a `galera-bundle` resource (a Dummy stands in for it).
    let pcm = support::pacemaker::Pacemaker::start(nodes[0]);
    pcm.sh("pcs resource create galera-bundle ocf:pacemaker:Dummy && crm_resource --wait --timeout 60s");
    Mariadb::sql(nodes[0], SCHEMA);
    Mariadb::sql(
        nodes[0],
        "CREATE DATABASE loadgen; CREATE TABLE loadgen.w (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
    );
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &format!(
            "[plugin.pacemaker]\n[plugin.galera.settings]\ndatadir = {DATADIR:?}\n\
             pacemaker-resource = \"galera-bundle\"\n"
        ),
    );
    s.init();
    let before = synced_state(nodes[0]);

    // desync = true, and a dump that fails (mysqldump not granted): the host resyncs the member.
    let text = std::fs::read_to_string(s.path("deployment.toml")).unwrap();
    std::fs::write(
        s.path("deployment.toml"),
        format!("{text}desync = true\n[plugin.galera.grant]\ncommands = [\"mysql **\"]\n"),
    )
    .unwrap();
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("may not run `mysqldump") && err.contains("undone on"),
        "{err}"
    );
    assert!(err.contains("resync"), "{err}");
    for n in &nodes {
        assert_eq!(
            Mariadb::sql(n, "SELECT @@wsrep_desync").trim(),
            "0",
            "{}",
            n.name
        );
    }
    std::fs::write(
        s.path("deployment.toml"),
        format!(
            "{text}desync = true\nclustercheck-user = \"clustercheck\"\n\
             clustercheck-password = \"it's-a-check\"\n"
        ),
    )
    .unwrap();

    // controller-0 takes writes (as the VIP holder would) all through the backup.
    let mut writer = std::process::Command::new("nsenter")
        .args(["-t", &nodes[0].sshd_pid().to_string(), "-m", "sh", "-c"])
        .arg("while :; do mariadb -e 'INSERT INTO loadgen.w (v) VALUES (1)' || exit 1; done")
        .spawn()
        .unwrap();
    while Mariadb::sql(nodes[0], "SELECT COUNT(*) FROM loadgen.w").trim() == "0" {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = s.ok(&["backup", "--json"]);
    let finished = writer.try_wait().unwrap();
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert!(finished.is_none(), "the writer stopped early: {finished:?}");

    let sources: Vec<String> = summary(&out)["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["plugin"] == "galera")
        .map(|a| a["node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(
        sources
            .iter()
            .all(|n| n == &sources[0] && n != "controller-0"),
        "the dump must come from one idle member, not the one taking writes: {sources:?}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    s.ok(&["validate", "latest"]);

    // A drill: the cluster's dump into a throwaway standalone server on this machine; every
    // table unchanged across the dump has its checksum, the one written all through it
    // (loadgen.w) is there. The cluster is not asked, and pacemaker's CIB is drilled too.
    let scratch = s.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let d = summary(&s.ok(&["drill", "--scratch", scratch.to_str().unwrap(), "--json"]));
    let galera = d["drills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["plugin"] == "galera")
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(galera["outcome"], "passed", "{d}");
    let checks = galera["checks"].as_array().unwrap();
    assert!(
        checks.iter().any(|c| c["name"]
            .as_str()
            .unwrap()
            .starts_with("table `nova`.`instances`")
            && c["detail"] == ""),
        "{d}"
    );
    assert!(
        checks.iter().any(|c| c["name"]
            .as_str()
            .unwrap()
            .starts_with("table `loadgen`.`w`")
            && c["detail"]
                .as_str()
                .unwrap()
                .starts_with("written during the backup")),
        "{d}"
    );
    assert!(
        d["drills"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["plugin"] == "pacemaker" && x["outcome"] == "passed"),
        "{d}"
    );
    for n in &nodes {
        assert_eq!(
            Mariadb::sql(n, "SELECT @@wsrep_desync").trim(),
            "0",
            "{}",
            n.name
        );
    }

    // Every member loses its datadir.
    for n in &nodes {
        let out = n.sh(&format!(
            "/usr/local/sbin/systemctl stop mariadb && rm -rf {DATADIR}"
        ));
        assert!(out.status.success());
    }
    // A dry run of the restore changes nothing on any member (servers, datadirs, firewall,
    // Pacemaker) and lists every state-changing command the restore then runs, in order.
    let members = || -> String {
        let mut state = String::new();
        for n in &nodes {
            let out = n.sh("ls -A /srv/db /run/mysqld");
            state.push_str(&format!(
                "{}: {}",
                n.name,
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        state
            + &iptables_rules(&nodes)
            + &pcm.sh("cibadmin --query --scope configuration")
            + &pcm.sh("crm_mon -1 | grep -c unmanaged || true")
    };
    let untouched = members();
    let plan = s.ok(&["restore", "latest", "--dry-run", "--json"]);
    assert_eq!(members(), untouched, "the dry run changed a member");
    let listed = planned(&plan, &["changes", "stores"]);
    for n in &nodes {
        for c in [
            format!("{}$ systemctl stop mariadb", n.name),
            format!(
                "{}$ iptables -I INPUT -d {} -p tcp --dport 3306 -j DROP",
                n.name, n.address
            ),
        ] {
            assert!(listed.contains(&c), "{c} is not in the plan: {listed:#?}");
        }
    }
    assert!(
        listed
            .iter()
            .any(|c| c.contains("galera_new_cluster mariadb"))
            && !planned(&plan, &["reversal"]).is_empty(),
        "{listed:#?}"
    );
    let out = s.ok(&["restore", "latest", "--json"]);
    assert_eq!(
        commands_run(&out, &["changes", "stores"]),
        listed,
        "the restore ran other state-changing commands than the dry run listed"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("\"ok\":false"), "{text}");
    assert!(
        text.contains("galera-bundle: Pacemaker leaves it alone"),
        "{text}"
    );
    // galera runs after pacemaker (its `after`), although the file names it first.
    let started = |p: &str| {
        let event = format!("\"plugin\":\"{p}\",\"operation\":\"restore\",\"status\":\"started\"");
        text.find(&event)
            .unwrap_or_else(|| panic!("no restore of {p}: {text}"))
    };
    assert!(started("pacemaker") < started("galera"), "{text}");
    assert!(
        !pcm.sh("crm_mon -1").contains("unmanaged"),
        "galera-bundle is given back"
    );
    for n in &nodes {
        assert_eq!(synced_state(n), before, "on {}", n.name);
        assert!(
            Mariadb::sql(n, "SHOW GRANTS FOR 'clustercheck'@'localhost'")
                .contains("GRANT PROCESS ON *.*"),
            "{}",
            n.name
        );
    }
    let rules = String::from_utf8(
        std::process::Command::new("iptables")
            .args(["-S", "INPUT"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for n in &nodes {
        assert!(!rules.contains(&n.address), "a block is left: {rules}");
    }

    // A restore in which a member's mariadbd is killed while it joins fails with a clear
    // error, unblocks 3306 and keeps the previous datadirs; the next restore completes.
    std::fs::write(nodes[2].own("/srv/db").join("kill-next-start"), "").unwrap();
    let out = s.run(&["restore", "latest"]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("controller-2") && err.contains("the host removes the 3306 blocks"),
        "{err}"
    );
    assert!(!iptables_rules(&nodes).contains("3306"));
    assert_eq!(err.matches("undone on controller-").count(), 4, "{err}");
    assert!(
        err.contains("give galera-bundle back to Pacemaker"),
        "{err}"
    );
    assert!(!pcm.sh("crm_mon -1").contains("unmanaged"));
    for n in &nodes {
        let kept = std::fs::read_dir(n.own("/srv/db"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("mysql.before-restore-")
            })
            .filter(|p| p.join("nova").join("instances.ibd").exists())
            .count();
        assert!(
            kept >= 1,
            "{}: no previous datadir with the data kept",
            n.name
        );
    }
    s.ok(&["restore", "latest"]);
    for n in &nodes {
        assert_eq!(synced_state(n), before, "on {}", n.name);
    }
    assert!(!iptables_rules(&nodes).contains("3306"));
}

/// The INPUT rules about `nodes`' addresses (tests run side by side on one firewall).
fn iptables_rules(nodes: &[&support::nodes::Node]) -> String {
    let all = String::from_utf8(
        std::process::Command::new("iptables")
            .args(["-S", "INPUT"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    all.lines()
        .filter(|l| {
            nodes
                .iter()
                .any(|n| l.contains(&format!("-d {}/32 ", n.address)))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn mysql_physical_backup_with_mariabackup_becomes_the_new_datadir() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["undercloud"]);
    let node = &cluster.nodes[0];
    let _db = Mariadb::start(node);
    Mariadb::sql(node, SCHEMA);
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["undercloud"]),
        &format!("[plugin.mysql.settings]\ndatadir = {DATADIR:?}\nmethod = \"mariabackup\"\n"),
    );
    s.init();
    let before = state(node);
    let out = s.ok(&["backup", "--json"]);
    let names = artifact_fields(&out, "name");
    assert_eq!(names, ["datadir.xbstream"]);
    // A physical copy is not drilled (the drill imports dumps): said, and not a pass.
    let out = s.run(&["drill"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(
        text.contains("mysql: not drillable")
            && text.contains("nothing in this snapshot could be drilled"),
        "{text}"
    );
    let out = node.sh(&format!(
        "/usr/local/sbin/systemctl stop mariadb && rm -rf {DATADIR}"
    ));
    assert!(out.status.success());
    s.ok(&["restore", "latest"]);
    assert_eq!(state(node), before);
}

/// `galera_new_cluster` before MariaDB 10.11.19: the manager environment, then `start`.
const OLD_GALERA_NEW_CLUSTER: &str = "#!/bin/sh
systemctl set-environment _WSREP_NEW_CLUSTER='--wsrep-new-cluster' && \\
    systemctl start ${1:-mariadb}
extcode=$?
systemctl set-environment _WSREP_NEW_CLUSTER=''
exit $extcode
";

/// The bootstrap the galera plugin runs (`galera_new_cluster mariadb`) works with both
/// generations of Debian's script: the packaged one (10.11.19 and later: an environment file
/// in /run, then `systemctl restart mariadb.service`) and the one before it (manager
/// environment, then `systemctl start mariadb`). Each bootstraps a one-member cluster; a plain
/// start after it does not bootstrap again (the new-cluster flag is gone from both places).
#[test]
fn galera_new_cluster_bootstraps_with_the_old_and_the_new_debian_script() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    let a = &node.address;
    let _db = Mariadb::install(
        node,
        &format!(
            "binlog_format=ROW\ninnodb_autoinc_lock_mode=2\nwsrep_on=ON\n\
             wsrep_provider=/usr/lib/galera/libgalera_smm.so\nwsrep_cluster_name=coffer-script\n\
             wsrep_cluster_address=gcomm://{a}:4567\nwsrep_node_address={a}\n\
             wsrep_provider_options=\"gmcast.listen_addr=tcp://{a}:4567\"\n"
        ),
    );
    let cluster_state = || {
        Mariadb::sql(
            node,
            "SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME IN ('WSREP_CLUSTER_SIZE', 'WSREP_LOCAL_STATE_COMMENT') ORDER BY 1",
        )
    };
    let bootstrapped = "wsrep_cluster_size\t1\nwsrep_local_state_comment\tSynced\n";
    let ok = |out: std::process::Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    // The packaged script (whatever release apt installed), as the plugin calls it.
    ok(
        node.sh("galera_new_cluster mariadb"),
        "packaged galera_new_cluster",
    );
    assert_eq!(cluster_state(), bootstrapped);
    assert!(
        !std::path::Path::new("/run/mariadb-wsrep-new-cluster").exists(),
        "the new-cluster flag outlived the bootstrap"
    );
    ok(node.sh("systemctl stop mariadb.service"), "stop");

    // The script of earlier releases, first on the node's PATH.
    let old = node.own("/usr/local/sbin").join("galera_new_cluster");
    std::fs::write(&old, OLD_GALERA_NEW_CLUSTER).unwrap();
    sh(&format!("chmod 755 {}", old.display()));
    ok(
        node.sh("galera_new_cluster mariadb"),
        "old galera_new_cluster",
    );
    assert_eq!(cluster_state(), bootstrapped);
    assert!(
        !node
            .sh("systemctl show-environment")
            .stdout
            .windows(13)
            .any(|w| w == b"wsrep-new-clu"),
        "the old script's flag stayed in the manager environment"
    );

    // Unknown verbs and units fail, naming them.
    let out = node.sh("systemctl reload mariadb");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported verb: reload"));
    let out = node.sh("systemctl start nova-api.service");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported unit: nova-api.service"));
}

/// Stop `node`'s mariadbd, then kill its sshd: the node answers nothing, as a dead controller.
fn kill_node(node: &support::nodes::Node) {
    let out = node.sh("/usr/local/sbin/systemctl stop mariadb");
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new("kill")
        .args(["-9", &node.sshd_pid().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// What a member has on disk and running, and the firewall: a refused run changes none of it.
fn member_state(nodes: &[&support::nodes::Node]) -> String {
    let mut state = String::new();
    for n in nodes {
        let out = n.sh("ls -A /srv/db /run/mysqld");
        state.push_str(&format!(
            "{}: {}",
            n.name,
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    state + &iptables_rules(nodes)
}

/// The `[[node]]` sections of `cluster` for the nodes `names`, all controllers.
fn sections_of(cluster: &Cluster, names: &[&str]) -> String {
    let all = cluster.deployment_nodes(&["controller"]);
    let mut parts = all.split("[[node]]");
    let mut text = parts.next().unwrap().to_string();
    for p in parts.filter(|p| {
        names
            .iter()
            .any(|n| p.starts_with(&format!("\nname = {n:?}")))
    }) {
        text.push_str("[[node]]");
        text.push_str(p);
    }
    text
}

/// Issue 15's scenario: after a good backup, controller-0 dies (sshd down) and the others lose
/// their datadirs. A degraded backup is taken from the survivors; the first snapshot's dump,
/// taken on the dead member, restores onto controller-1 and controller-2 (the plan first); the
/// degraded snapshot restores with controller-0 gone from the deployment file; and a fresh
/// controller-3 with another address takes controller-0's place (`--map`): its files come
/// back there and it joins the restored cluster of 3.
#[test]
fn galera_restores_onto_the_survivors_and_a_replacement_when_a_controller_is_dead() {
    let _turn = support::mariadb::one_galera_at_a_time();
    let s = Scratch::new();
    let cluster = Cluster::start(
        &s.path("nodes"),
        &[
            "controller-0",
            "controller-1",
            "controller-2",
            "controller-3",
        ],
    );
    let nodes: Vec<_> = cluster.nodes[..3].iter().collect();
    let fresh = &cluster.nodes[3];
    let _dbs = Mariadb::galera(&nodes);
    Mariadb::sql(nodes[0], SCHEMA);
    for n in &cluster.nodes {
        std::fs::write(n.srv_node.join("owner"), &n.name).unwrap();
    }
    let plugins = format!(
        "[plugin.galera.settings]\ndatadir = {DATADIR:?}\n\n\
         [plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n"
    );
    let deploy = |names: &[&str]| s.deployment_with_nodes(&sections_of(&cluster, names), &plugins);
    deploy(&["controller-0", "controller-1", "controller-2"]);
    s.init();
    let before = synced_state(nodes[0]);

    // Nobody writes: the first idle member, controller-0, is the source.
    let first = summary(&s.ok(&["backup", "--json"]));
    let dumps: Vec<(&str, &str)> = first["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["plugin"] == "galera")
        .map(|a| {
            (
                a["node"].as_str().unwrap(),
                a["scope"].as_str().unwrap_or("node"),
            )
        })
        .collect();
    assert_eq!(
        dumps,
        [("controller-0", "cluster"), ("controller-0", "cluster")],
        "{first}"
    );
    let first = first["snapshot"].as_str().unwrap().to_string();

    kill_node(nodes[0]);
    let survivors = &nodes[1..];
    support::mariadb::wait_synced(survivors);

    // A degraded backup: written from the survivors, controller-0 recorded missing, exit 8.
    let out = s.run(&["backup", "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(
        err.contains("degraded backup: controller-0 missing"),
        "{err}"
    );
    let degraded = summary(&out);
    assert_eq!(degraded["missing"][0]["node"], "controller-0", "{degraded}");
    let mut missed: Vec<&str> = degraded["missing"][0]["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    missed.sort();
    assert_eq!(missed, ["filesystem", "galera"], "{degraded}");
    assert!(
        degraded["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["node"] != "controller-0"),
        "{degraded}"
    );
    let degraded = degraded["snapshot"].as_str().unwrap().to_string();
    assert_eq!(s.snapshot_count(), 2);
    let list = String::from_utf8_lossy(&s.ok(&["snapshots"]).stdout).into_owned();
    assert_eq!(list.matches("MISSING controller-0").count(), 1, "{list}");
    let shown = String::from_utf8_lossy(&s.ok(&["snapshots", "show", &first]).stdout).into_owned();
    assert!(
        shown.contains("controller-0/galera/databases.sql (the cluster's)"),
        "{shown}"
    );

    let lose_datadirs = || {
        for n in survivors {
            let out = n.sh(&format!(
                "/usr/local/sbin/systemctl stop mariadb && rm -rf {DATADIR}"
            ));
            assert!(out.status.success());
        }
    };
    lose_datadirs();
    let untouched = member_state(survivors);

    // Without --node the dead member is needed: refused before anything runs, saying how on.
    let out = s.run(&["restore", &first]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("controller-0") && err.contains("--node"),
        "{err}"
    );
    assert_eq!(member_state(survivors), untouched);
    // The plan is printed all the same, with the dead member marked.
    let plan = s.ok(&["restore", &first, "--dry-run"]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(text.contains("UNREACHABLE controller-0"), "{text}");
    let plan = s.ok(&["restore", &first, "--dry-run", "--json"]);
    assert_eq!(summary(&plan)["unreachable"][0]["node"], "controller-0");
    let listed = planned(&plan, &["changes", "stores"]);
    assert!(
        listed.contains(&"controller-1$ galera_new_cluster mariadb".to_string())
            && listed.iter().all(|c| !c.starts_with("controller-0$")),
        "{listed:#?}"
    );
    assert_eq!(member_state(survivors), untouched);

    // The dump taken on the dead member restores onto the two survivors.
    let out = s.ok(&[
        "restore",
        &first,
        "--node",
        "controller-1",
        "--node",
        "controller-2",
        "--json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "the backup was taken from controller-0, which is not taking part in this restore; \
             controller-1, the first of the members (controller-1, controller-2), bootstraps"
        ),
        "{text}"
    );
    assert!(!text.contains("\"ok\":false"), "{text}");
    let size = |n: &support::nodes::Node| {
        Mariadb::sql(n, "SHOW STATUS LIKE 'wsrep_cluster_size'")
            .trim()
            .to_string()
    };
    for n in survivors {
        assert_eq!(synced_state(n), before, "on {}", n.name);
        assert_eq!(size(n), "wsrep_cluster_size\t2");
    }
    assert!(!iptables_rules(survivors).contains("3306"));

    // controller-0 leaves the deployment file: the degraded snapshot restores, and a snapshot
    // naming controller-0 is said to, not refused.
    lose_datadirs();
    deploy(&["controller-1", "controller-2"]);
    s.ok(&["restore", &degraded]);
    for n in survivors {
        assert_eq!(synced_state(n), before, "on {}", n.name);
    }
    let out = s.ok(&["validate", &first]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("node `controller-0`, which is not in deployment")
            && err.contains("only its cluster artifacts")
            && err.contains("its node artifacts (tree:srv:node.tar, xattrs:tree:srv:node.tar)")
            && err.contains("--map controller-0=NODE"),
        "{err}"
    );

    // A fresh controller-3, another address, takes controller-0's place; as the deployment
    // tool would, the survivors' configuration names it instead of controller-0.
    let _joiner = Mariadb::galera_member(fresh, &[nodes[1], nodes[2], fresh]);
    for n in survivors {
        let cnf = n.own("/srv/db").join("my.cnf");
        let text = std::fs::read_to_string(&cnf).unwrap();
        let text = text.replace(
            &format!("{}:4567", nodes[0].address),
            &format!("{}:4567", fresh.address),
        );
        std::fs::write(&cnf, text).unwrap();
    }
    std::fs::remove_file(fresh.srv_node.join("owner")).unwrap();
    deploy(&["controller-1", "controller-2", "controller-3"]);
    let out = s.run(&["restore", &first, "--map", "controller-0=controller-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already has data of node `controller-1`")
    );
    let out = s.ok(&[
        "restore",
        &first,
        "--map",
        "controller-0=controller-3",
        "--json",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("what the snapshot has of node controller-0 is restored onto controller-3")
            && text.contains(
                "controller-3 bootstraps the cluster (the member the backup was taken from)"
            ),
        "{text}"
    );
    assert!(!text.contains("\"ok\":false"), "{text}");
    assert_eq!(
        std::fs::read_to_string(fresh.srv_node.join("owner")).unwrap(),
        "controller-0"
    );
    for n in [nodes[1], nodes[2], fresh] {
        assert_eq!(synced_state(n), before, "on {}", n.name);
        assert_eq!(size(n), "wsrep_cluster_size\t3");
    }
    assert!(!iptables_rules(&[nodes[1], nodes[2], fresh]).contains("3306"));
}
