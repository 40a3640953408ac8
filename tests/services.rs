//! The service plugins against real servers on SSH test nodes: Redis.

mod support;

use support::nodes::Cluster;
use support::redis::{DIR, Redis, off_tiny_disk, on_tiny_disk};
use support::*;

const PASSWORD: &str = "r3dis-pw-not-in-argv";

/// 100k+ keys of every type, some with TTLs, in two databases.
const FILL: &str = "
for i = 1, 40000 do redis.call('SET', 's:'..i, string.rep('v', i % 50)..i) end
for i = 1, 15000 do redis.call('HSET', 'h:'..i, 'a', i, 'b', 'x'..i, 'c', i * 2) end
for i = 1, 15000 do redis.call('RPUSH', 'l:'..i, i, i + 1, 'z') end
for i = 1, 10000 do redis.call('SADD', 'S:'..i, 'm'..i, 'n'..i) end
for i = 1, 10000 do redis.call('ZADD', 'z:'..i, i, 'a', i + 0.5, 'b') end
for i = 1, 5000 do redis.call('XADD', 'x:'..i, '*', 'f', i) end
for i = 1, 5000 do redis.call('SET', 't:'..i, i, 'EX', 3600 + i) end
redis.call('SELECT', 1)
for i = 1, 1000 do redis.call('SET', 'db1:'..i, i) end
return 1";

#[test]
fn redis_round_trip_keeps_every_key_type_and_ttl_and_a_consistent_snapshot() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    let redis = Redis::start(node, PASSWORD, "");
    redis.cli(&["EVAL", FILL, "0"]);
    let digest_values = redis.cli(&[
        "DEBUG",
        "DIGEST-VALUE",
        "s:77",
        "h:5",
        "l:9",
        "S:3",
        "z:4",
        "x:2",
    ]);
    let digest = redis.cli(&["DEBUG", "DIGEST"]);
    assert_eq!(redis.cli(&["DBSIZE"]), "100000");
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &format!("[plugin.redis.settings]\npassword = {PASSWORD:?}\ndir = {DIR:?}\n"),
    );
    s.init();

    // A dry run asks Redis (INFO runs) but saves nothing: BGSAVE is only listed.
    let saves = || {
        redis
            .cli(&["INFO", "persistence"])
            .lines()
            .find_map(|l| {
                l.strip_prefix("rdb_saves:")
                    .map(str::trim)
                    .map(str::to_string)
            })
            .unwrap()
    };
    let before = saves();
    let plan = run_watching_argv(s.command(&["backup", "--dry-run", "--json"]), PASSWORD);
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert_eq!(saves(), before, "the dry run saved");
    assert_eq!(s.snapshot_count(), 0);
    let listed = planned(&plan, &["changes", "stores"]);
    assert!(
        listed.iter().any(|c| c.ends_with("--askpass BGSAVE"))
            && planned(&plan, &["reads"])
                .iter()
                .any(|c| c.ends_with("INFO persistence")),
        "{listed:#?}"
    );

    // A client writes continuously: a and b are incremented together, atomically.
    let writer = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while :; do printf '%s\\n' \"$PW\" | redis-cli --no-auth-warning --askpass -h {} \
             EVAL \"redis.call('INCR','a') redis.call('INCR','b')\" 0 >/dev/null || exit 1; done",
            node.address
        ))
        .env("PW", PASSWORD)
        .spawn()
        .unwrap();
    let mut writer = writer;
    while redis.cli(&["GET", "a"]).is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = run_watching_argv(s.command(&["backup", "--json"]), PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(commands_run(&out, &["changes", "stores"]), listed);
    writer.kill().unwrap();
    writer.wait().unwrap();
    let names = artifact_fields(&out, "name");
    assert_eq!(names, ["dump.rdb"]);
    assert!(
        node.sh(&format!("ls {DIR}"))
            .stdout
            .windows(7)
            .all(|w| w != b"coffer-"),
        "the temporary link is left"
    );

    // Lose everything: the data is flushed and the dump file damaged.
    redis.cli(&["FLUSHALL"]);
    let out = node.sh(&format!(
        "/usr/local/sbin/systemctl stop redis-server && echo damaged > {DIR}/dump.rdb"
    ));
    assert!(out.status.success());
    s.ok(&["restore", "latest"]);
    // The snapshot is one point in time: both counters moved together.
    let (a, b) = (redis.cli(&["GET", "a"]), redis.cli(&["GET", "b"]));
    assert_eq!(a, b);
    assert!(a.parse::<u64>().unwrap() > 0);
    // The whole data set, values and expiry times, is what it was apart from the counters.
    redis.cli(&["DEL", "a", "b"]);
    assert_eq!(redis.cli(&["DEBUG", "DIGEST"]), digest);
    redis.cli(&["SET", "a", &a]);
    redis.cli(&["SET", "b", &b]);
    // Everything else is back exactly.
    assert_eq!(
        redis.cli(&[
            "DEBUG",
            "DIGEST-VALUE",
            "s:77",
            "h:5",
            "l:9",
            "S:3",
            "z:4",
            "x:2"
        ]),
        digest_values
    );
    let ttl: i64 = redis.cli(&["TTL", "t:7"]).parse().unwrap();
    assert!(ttl > 3000, "TTL lost: {ttl}");
    let owner = node.sh(&format!("stat -c %U {DIR}/dump.rdb"));
    assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), "redis");
    let kept: Vec<_> = std::fs::read_dir(node.own(DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("dump.rdb.before-restore-")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the previous dump is kept aside");
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), "damaged\n");
    // The key counts per database match the backup's record; one key less does not.
    s.ok(&["validate", "latest"]);
    redis.cli(&["DEL", "s:1"]);
    let out = s.run(&["validate", "latest"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("keys in db0"));
}

/// A drill loads each node's `dump.rdb` into a throwaway `redis-server` on this machine (its
/// socket in a scratch directory, no TCP port) and finds the keys the backup recorded; the live
/// Redis is untouched (same `DEBUG DIGEST`), nothing is left running, the scratch directory is
/// removed, and `coffer status` shows the drill. A damaged repository fails the drill (exit 5)
/// naming the artifact, and status says so.
/// Per-plugin retention (`[retention.plugin.redis]`): the Redis dumps are kept for the newest
/// run only while `/srv/node` is kept for three. After four backups (the policy applies after
/// each), three snapshots remain; the two older ones hold no Redis artifact and say so
/// (`trimmed`), at their original times; the dry run names what it would trim; a restore of
/// Redis from a trimmed snapshot is refused saying why, a whole restore of one restores the
/// files and says Redis was not; `check --read-data` passes.
#[test]
fn a_plugin_keeps_its_artifacts_by_its_own_retention_policy() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    let redis = Redis::start(node, PASSWORD, "");
    redis.fill(1000);
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &format!(
            "[plugin.redis.settings]\npassword = {PASSWORD:?}\ndir = {DIR:?}\n\
             [plugin.filesystem]\nroles = [\"controller\"]\n\
             [plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n\
             [retention]\nkeep-last = 3\n[retention.plugin.redis]\nkeep-last = 1\n"
        ),
    );
    s.init();
    for i in 0..4u64 {
        std::fs::write(node.srv_node.join("f"), noise(i, 1 << 16)).unwrap();
        s.ok(&["backup"]);
    }
    let listed: Vec<serde_json::Value> = String::from_utf8(s.ok(&["snapshots", "--json"]).stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    let plugins_of = |snap: &serde_json::Value| -> Vec<String> {
        let mut v: Vec<String> = snap["manifest"]["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["plugin"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    for old in &listed[..2] {
        assert_eq!(plugins_of(old), ["filesystem"], "{old}");
        assert_eq!(
            old["manifest"]["trimmed"],
            serde_json::json!(["redis"]),
            "{old}"
        );
    }
    assert_eq!(plugins_of(&listed[2]), ["filesystem", "redis"]);
    assert!(listed[0]["time"].as_str() < listed[1]["time"].as_str());
    let text = String::from_utf8(s.ok(&["snapshots"]).stdout).unwrap();
    assert_eq!(
        text.matches("redis-REMOVED-BY-RETENTION").count(),
        2,
        "{text}"
    );

    let plan = s.ok(&["forget", "--dry-run"]);
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.contains("redis: last") && plan.contains("would forget 0"),
        "{plan}"
    );

    let trimmed = listed[0]["id"].as_str().unwrap();
    let out = s.run(&["restore", trimmed, "--plugin", "redis"]);
    failed_with(
        &out,
        2,
        &["removed from this snapshot by its retention policy"],
    );
    std::fs::remove_file(node.srv_node.join("f")).unwrap();
    let out = s.ok(&["restore", trimmed, "--plugin", "filesystem"]);
    assert!(node.srv_node.join("f").exists(), "{out:?}");
    let out = s.ok(&["restore", trimmed]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("plugin redis: its artifacts were removed"),
        "{out:?}"
    );
    s.ok(&["check", "--read-data"]);
}

#[test]
fn redis_drill_loads_the_dump_into_a_throwaway_server_and_leaves_the_live_one_alone() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    let redis = Redis::start(node, PASSWORD, "");
    redis.cli(&["EVAL", FILL, "0"]);
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &format!("[plugin.redis.settings]\npassword = {PASSWORD:?}\ndir = {DIR:?}\n"),
    );
    s.init();
    s.ok(&["backup"]);
    let digest = redis.cli(&["DEBUG", "DIGEST"]);
    let scratch = s.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let scratch = scratch.to_str().unwrap();
    let out = s.ok(&["drill", "--scratch", scratch, "--json"]);
    let d = summary(&out);
    assert_eq!(d["drills"][0]["plugin"], "redis", "{d}");
    assert_eq!(d["drills"][0]["outcome"], "passed", "{d}");
    let checks = d["drills"][0]["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2, "{d}");
    assert!(
        checks
            .iter()
            .all(|c| c["ok"] == true && c["detail"].as_str().unwrap().starts_with("101000 keys")),
        "{d}"
    );
    assert_eq!(
        redis.cli(&["DEBUG", "DIGEST"]),
        digest,
        "the live Redis changed"
    );
    assert_eq!(std::fs::read_dir(scratch).unwrap().count(), 0);
    let left = std::process::Command::new("pgrep")
        .args(["-f", scratch])
        .output()
        .unwrap();
    assert!(
        !left.status.success(),
        "a throwaway server is still running"
    );
    let status = summary(&s.ok(&["status", "--json"]));
    assert_eq!(status["drills"]["redis"]["outcome"], "passed", "{status}");

    s.corrupt_largest_pack();
    let out = s.run(&["drill", "--scratch", scratch]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(
        text.contains("redis: FAILED") && text.contains("dump.rdb"),
        "{text}"
    );
    let status = summary(&s.run(&["status", "--json"]));
    assert_eq!(status["drills"]["redis"]["outcome"], "failed", "{status}");
}

#[test]
fn redis_bad_cases_name_plugin_node_and_step_and_lose_nothing() {
    let s = Scratch::new();
    // Isolated: what the node starts (Redis from a tmpfs below) ends with it.
    let cluster = Cluster::start_isolated(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    let redis = Redis::start(node, PASSWORD, "");
    redis.fill(60000);
    let deployment = |password: &str, extra: &str| {
        s.deployment_with_nodes(
            &cluster.deployment_nodes(&["controller"]),
            &format!("[plugin.redis.settings]\npassword = {password:?}\ndir = {DIR:?}\n{extra}"),
        )
    };
    let failure = |out: &std::process::Output, code: i32, what: &str| {
        failed_with(out, code, &["redis", "controller-0", what])
    };
    deployment("not-the-password", "");
    s.init();

    // A wrong password: refused, and the password given is in no argv nor output.
    let out = run_watching_argv(s.command(&["backup"]), "not-the-password");
    failure(&out, 4, "WRONGPASS");
    assert_eq!(s.snapshot_count(), 0);

    // A save that never finishes: the plugin's own limit, then no snapshot.
    deployment(PASSWORD, "timeout-seconds = \"2\"\n");
    redis.cli(&["CONFIG", "SET", "rdb-key-save-delay", "1000000"]);
    let out = s.run(&["backup"]);
    failure(&out, 4, "BGSAVE did not finish in 2s");
    assert_eq!(s.snapshot_count(), 0);
    redis.cli(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    // That save still runs; Redis stops its own save children with SIGUSR1.
    let out = node.sh(
        "pkill -USR1 -f '^redis-rdb-bgsave' && while pgrep -f '^redis-rdb-bgsave'; do sleep 0.1; done",
    );
    assert!(out.status.success(), "{out:?}");

    deployment(PASSWORD, "");
    s.ok(&["backup"]);
    assert_eq!(s.snapshot_count(), 1);

    // Not running: backup and validate say so.
    assert!(
        node.sh("/usr/local/sbin/systemctl stop redis-server")
            .status
            .success()
    );
    let out = s.run(&["backup"]);
    failure(&out, 4, "Connection refused");
    assert_eq!(s.snapshot_count(), 1);
    let out = s.run(&["validate", "latest"]);
    failure(&out, 5, "PING");

    // A full disk on restore: the data Redis had is back and served.
    assert!(
        node.sh("/usr/local/sbin/systemctl start redis-server")
            .status
            .success()
    );
    redis.cli(&["FLUSHALL"]);
    redis.cli(&["SET", "old", "1"]);
    redis.cli(&["SAVE"]);
    on_tiny_disk(node);
    let out = s.run(&["restore", "latest"]);
    let err = failure(&out, 4, "No space left on device");
    assert!(
        err.contains("undone") && err.contains("start Redis again"),
        "{err}"
    );
    assert_eq!(redis.cli(&["GET", "old"]), "1");
    assert_eq!(redis.cli(&["DBSIZE"]), "1");
    let files = node.sh(&format!("ls {DIR}"));
    let files = String::from_utf8_lossy(&files.stdout);
    assert!(
        !files.contains(".coffer"),
        "a partial file is left: {files}"
    );
}

#[test]
fn redis_with_aof_restores_the_append_only_files() {
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    let redis = Redis::start(node, PASSWORD, "appendonly yes\n");
    redis.cli(&[
        "EVAL",
        "for i = 1, 20000 do redis.call('HSET', 'h:'..i, 'f', i) end return 1",
        "0",
    ]);
    let digest = redis.cli(&["DEBUG", "DIGEST"]);
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &format!("[plugin.redis.settings]\npassword = {PASSWORD:?}\ndir = {DIR:?}\n"),
    );
    s.init();
    let out = s.ok(&["backup", "--json"]);
    let names = artifact_fields(&out, "name");
    assert_eq!(names, ["appendonly", "dump.rdb"]);
    // The loss is recorded in the AOF itself: only the restored AOF brings the data back.
    redis.cli(&["FLUSHALL"]);
    assert!(
        node.sh("/usr/local/sbin/systemctl stop redis-server")
            .status
            .success()
    );
    s.ok(&["restore", "latest"]);
    assert_eq!(redis.cli(&["DEBUG", "DIGEST"]), digest);
    assert_eq!(redis.cli(&["DBSIZE"]), "20000");
}

#[test]
fn pacemaker_configuration_comes_back_exactly_after_it_changed() {
    use support::pacemaker::Pacemaker;
    let s = Scratch::new();
    // Its own PID namespace: the stand-in's `pkill pacemakerd` reaches only this node's.
    let cluster = Cluster::start_isolated(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    let pcm = Pacemaker::start(node);
    pcm.sh("pcs resource create vip ocf:pacemaker:Dummy && \
         pcs resource create api ocf:pacemaker:Dummy && \
         pcs constraint colocation add api with vip INFINITY && \
         pcs constraint order start vip then start api && \
         crm_resource --wait --timeout 60s");
    let before = pcm.configuration();
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        "[plugin.pacemaker]\n",
    );
    s.init();
    let out = s.ok(&["backup", "--json"]);
    let names = artifact_fields(&out, "name");
    assert_eq!(
        names,
        [
            "cib.xml",
            "configuration.xml",
            "corosync",
            "pcs-config.tar.bz2"
        ]
    );
    s.ok(&["validate", "latest"]);
    // A drill: the saved CIB in a scratch directory on this machine passes crm_verify and
    // configures both resources; the cluster is not asked.
    let scratch = s.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let d = summary(&s.ok(&["drill", "--scratch", scratch.to_str().unwrap(), "--json"]));
    assert_eq!(d["drills"][0]["outcome"], "passed", "{d}");
    let listed = d["drills"][0]["checks"][1]["detail"].as_str().unwrap();
    assert!(listed.contains("vip") && listed.contains("api"), "{d}");

    // The configuration changes after the backup: a resource gone, another added, a property.
    pcm.sh(
        "pcs resource delete api && pcs resource create extra ocf:pacemaker:Dummy && \
         pcs property set maintenance-mode=false && crm_resource --wait --timeout 60s",
    );
    assert_ne!(pcm.configuration(), before);
    let out = s.run(&["validate", "latest"]);
    assert_eq!(out.status.code(), Some(5), "validate must see api gone");

    s.ok(&["restore", "latest"]);
    assert_eq!(pcm.configuration(), before);
    let status = pcm.sh("crm_mon -1");
    assert!(
        status.contains("api") && !status.contains("extra"),
        "{status}"
    );

    // The full way: the cluster stopped, `pcs config restore --local`, started again.
    pcm.sh("pcs resource delete api && crm_resource --wait --timeout 60s");
    s.edit_deployment(
        "[plugin.pacemaker]\n",
        "[plugin.pacemaker.settings]\nrestore-mode = \"full\"\n",
    );
    s.ok(&["restore", "latest"]);
    let status = pcm.sh("crm_mon -1");
    assert!(
        status.contains("api") && status.contains("partition with quorum"),
        "{status}"
    );
    s.ok(&["validate", "latest"]);

    // The cluster not running: a backup says so and keeps nothing; validate fails.
    pcm.sh("/usr/local/sbin/systemctl stop pacemaker");
    let snapshots = s.snapshot_count();
    failed_with(
        &s.run(&["backup"]),
        4,
        &[
            "pacemaker",
            "backup",
            "controller-0",
            "no member of the cluster has quorum",
        ],
    );
    assert_eq!(s.snapshot_count(), snapshots);
    let out = s.run(&["validate", "latest"]);
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn pacemaker_three_member_cluster_gets_its_configuration_back_on_every_member() {
    use support::pacemaker::Pacemaker;
    let s = Scratch::new();
    let names = ["controller-0", "controller-1", "controller-2"];
    // One network and PID namespace per member: corosync finds itself by its address.
    let cluster = Cluster::start_isolated(&s.path("nodes"), &names);
    let pcm = Pacemaker::start_cluster(&cluster.nodes);
    pcm.sh("pcs resource create vip ocf:pacemaker:Dummy && \
         pcs resource create api ocf:pacemaker:Dummy && \
         pcs constraint colocation add api with vip INFINITY && \
         pcs constraint order start vip then start api && \
         pcs constraint location vip prefers controller-1=100 && \
         crm_resource --wait --timeout 60s");
    let before = pcm.configuration();
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        "[plugin.pacemaker]\n",
    );
    s.init();
    let out = s.ok(&["backup", "--json"]);
    assert_eq!(artifact_fields(&out, "node"), ["controller-0"; 4]);
    let first = summary(&out)["snapshot"].as_str().unwrap().to_string();
    s.ok(&["validate", "latest"]);

    // Changed on another member; then controller-0's pacemaker goes down.
    pcm.sh_on(
        2,
        "pcs resource delete api && pcs resource create extra ocf:pacemaker:Dummy && \
         crm_resource --wait --timeout 60s",
    );
    let out = s.run(&["validate", "latest"]);
    assert_eq!(out.status.code(), Some(5), "validate must see api gone");
    pcm.sh("/usr/local/sbin/systemctl stop pacemaker");
    let out = s.run(&["validate", "latest"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "validate must see a member down"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("controller-0"),
        "{out:?}"
    );

    // The restore goes through the first member with quorum (and its validation says that
    // controller-0 is still down); every member has the backup's configuration, controller-0
    // too once it is back.
    let out = s.run(&["restore", "latest"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(stderr.contains("skipped controller-0"), "{stderr}");
    assert!(stderr.contains("FAIL controller-0: quorum"), "{stderr}");
    for (i, name) in names.iter().enumerate().skip(1) {
        assert_eq!(pcm.configuration_on(i), before, "{name}");
    }
    pcm.sh("/usr/local/sbin/systemctl start pacemaker && crm_resource --wait --timeout 60s");
    assert_eq!(pcm.configuration_on(0), before);
    s.ok(&["validate", "latest"]);

    // The full way on all three: stopped everywhere, `pcs config restore --local`, started.
    pcm.sh_on(
        1,
        "pcs resource delete api && crm_resource --wait --timeout 60s",
    );
    s.edit_deployment(
        "[plugin.pacemaker]\n",
        "[plugin.pacemaker.settings]\nrestore-mode = \"full\"\n",
    );
    s.ok(&["restore", "latest"]);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(pcm.configuration_on(i), before, "{name}");
    }
    s.ok(&["validate", "latest"]);

    // controller-0 dies (its sshd is its PID namespace's init: everything there goes). The two
    // others keep quorum: a backup is degraded (exit 8) and taken through controller-1.
    let dead = std::process::Command::new("kill")
        .args(["-9", &cluster.nodes[0].sshd_pid().to_string()])
        .status()
        .unwrap();
    assert!(dead.success());
    pcm.sh_on(
        1,
        "i=0; until crm_mon -1 | grep -q 'OFFLINE: \\[ controller-0 \\]'; do \
         i=$((i+1)); [ $i -lt 600 ] || { crm_mon -1; exit 1; }; sleep 0.1; done",
    );
    let out = s.run(&["backup", "--json"]);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    assert_eq!(artifact_fields(&out, "node"), ["controller-1"; 4]);
    assert_eq!(summary(&out)["missing"][0]["node"], "controller-0");
    // The first snapshot's CIB, taken on the dead member, goes back through a survivor.
    pcm.sh_on(
        1,
        "pcs resource delete api && crm_resource --wait --timeout 60s",
    );
    s.edit_deployment("restore-mode = \"full\"\n", "");
    let out = s.ok(&[
        "restore",
        &first,
        "--node",
        "controller-1",
        "--node",
        "controller-2",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("controller-1: CIB configuration replaced"),
        "{stderr}"
    );
    for i in [1, 2] {
        assert_eq!(pcm.configuration_on(i), before, "{}", names[i]);
    }
}

#[test]
fn swift_objects_come_back_with_their_metadata_after_srv_node_and_etc_swift_are_wiped() {
    use support::swift::{KEY, Swift, USER};
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    let swift = Swift::start(node);
    let (token, url) = swift.auth();
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-f", "-H", &format!("X-Auth-Token: {token}")])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    curl(&["-X", "PUT", &format!("{url}/images")]);
    let mut objects = Vec::new();
    for i in 0..5u64 {
        let body = s.path(&format!("obj{i}"));
        std::fs::write(&body, noise(i, 10_000 + i as usize * 7_000)).unwrap();
        let name = format!("images/dir/obj {i}");
        curl(&[
            "-X",
            "PUT",
            "-T",
            body.to_str().unwrap(),
            "-H",
            &format!("X-Object-Meta-Color: blue-{i}"),
            &format!("{url}/{}", name.replace(' ', "%20")),
        ]);
        objects.push((name, std::fs::read(&body).unwrap()));
    }
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["swift"]),
        &format!("[plugin.swift.settings]\nuser = {USER:?}\nkey = {KEY:?}\n"),
    );
    s.init();
    // A wrong key: refused by the proxy, and the key given is in no argv nor output.
    s.edit_deployment(&format!("key = {KEY:?}"), "key = \"not-the-key\"");
    let out = run_watching_argv(s.command(&["backup"]), "not-the-key");
    failed_with(
        &out,
        4,
        &[
            "swift",
            "backup",
            "controller-0",
            "did not authenticate test:tester",
        ],
    );
    s.edit_deployment("key = \"not-the-key\"", &format!("key = {KEY:?}"));
    assert_eq!(s.snapshot_count(), 0);
    let out = run_watching_argv(s.command(&["backup", "--json"]), KEY);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.ok(&["validate", "latest"]);

    // A drill: the files extracted on this machine, every object's data against its pickled
    // metadata and the backup's inventory; no Swift service asked.
    let scratch = s.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let d = summary(&s.ok(&["drill", "--scratch", scratch.to_str().unwrap(), "--json"]));
    assert_eq!(d["drills"][0]["outcome"], "passed", "{d}");
    let found: usize = d["drills"][0]["checks"][0]["detail"]
        .as_str()
        .unwrap()
        .trim_end_matches(" object(s)")
        .parse()
        .unwrap();
    assert!(found >= objects.len(), "{d}");

    // Wipe the data and the configuration (rings included), servers down.
    swift.stop();
    // The proxy down: the backup cannot list the objects, says so, keeps nothing.
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("controller-0") && err.contains("Failed to connect"),
        "{err}"
    );
    assert_eq!(s.snapshot_count(), 1);
    for dir in ["/srv/node", "/etc/swift"] {
        for e in std::fs::read_dir(node.own(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                std::fs::remove_dir_all(p).unwrap()
            } else {
                std::fs::remove_file(p).unwrap()
            }
        }
    }
    s.ok(&["restore", "latest"]);
    let (token, url) = swift.auth();
    for (name, bytes) in &objects {
        let target = format!("{url}/{}", name.replace(' ', "%20"));
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-D",
                "-",
                "-H",
                &format!("X-Auth-Token: {token}"),
                &target,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {out:?}");
        let text = out.stdout;
        let split = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let (headers, body) = text.split_at(split);
        assert_eq!(body, &bytes[..], "{name}");
        let i = name.chars().last().unwrap();
        assert!(
            String::from_utf8_lossy(headers).contains(&format!("X-Object-Meta-Color: blue-{i}")),
            "{name}: {}",
            String::from_utf8_lossy(headers)
        );
    }
}

/// Definitions as an operator's deployment tool would load them: a vhost with queues, an
/// exchange, a binding, a policy and a user with a password.
const RABBIT_DEFINITIONS: &str = r#"{
 "vhosts": [{"name": "nova"}],
 "users": [{"name": "nova-svc", "password": "s3cret-rabbit", "tags": []}],
 "permissions": [{"user": "nova-svc", "vhost": "nova", "configure": ".*", "write": ".*", "read": ".*"}],
 "queues": [
  {"name": "conductor", "vhost": "nova", "durable": true, "auto_delete": false, "arguments": {}},
  {"name": "scheduler", "vhost": "nova", "durable": true, "auto_delete": false, "arguments": {"x-queue-type": "quorum"}}],
 "exchanges": [{"name": "nova", "vhost": "nova", "type": "topic", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}],
 "bindings": [{"source": "nova", "vhost": "nova", "destination": "conductor", "destination_type": "queue", "routing_key": "conductor.#", "arguments": {}}],
 "policies": [{"vhost": "nova", "name": "ha-all", "pattern": "^", "apply-to": "queues", "definition": {"message-ttl": 600000}, "priority": 0}]
}"#;

/// A repository in Ceph's RADOS Gateway (S3), the object store most OpenStack deployments run:
/// init creates the bucket, backups, `check --read-data`, a restore byte for byte (the artifact
/// read from the bucket once, then validated from what was read), restic itself listing and
/// checking the same bucket, forget + prune, the secret key on no command line and in no
/// output; wrong keys and a gateway that is down are each exit 3 naming the repository.
#[test]
fn a_repository_in_the_ceph_rados_gateway() {
    use support::rgw::{self, Rgw};
    let s = Scratch::new();
    let gateway = Rgw::start(&s.path("ceph"));
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    s.filesystem(&[&data]);
    let place = format!("s3:{}/coffer/overcloud", gateway.url);
    s.edit_deployment(
        &format!("path = \"{}\"", s.repo().display()),
        &format!("path = \"{place}\""),
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", rgw::ACCESS),
        ("AWS_SECRET_ACCESS_KEY", rgw::SECRET),
    ];
    let command = |args: &[&str]| {
        let mut c = s.command(args);
        c.envs(env);
        c
    };
    let ok = |args: &[&str]| {
        let out = run_watching_argv(command(args), rgw::SECRET);
        assert!(
            out.status.success(),
            "coffer {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    failed_with(
        &command(&["snapshots"]).output().unwrap(),
        3,
        &[&format!("no repository at {place}"), "coffer init"],
    );
    ok(&["init"]);
    // Larger than one planned read (8 MiB) and than what is kept in memory (32 MiB).
    let big = noise(41, 40 << 20);
    std::fs::write(data.join("big"), &big).unwrap();
    std::fs::write(data.join("small"), b"small").unwrap();
    let first = summary(&ok(&["backup", "--json"]))["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(data.join("big"), noise(42, 1 << 20)).unwrap();
    ok(&["backup"]);
    ok(&["check", "--read-data"]);
    std::fs::remove_file(data.join("small")).unwrap();
    let out = ok(&["restore", &first]);
    assert!(
        std::fs::read(data.join("big")).unwrap() == big,
        "big restored"
    );
    assert_eq!(std::fs::read(data.join("small")).unwrap(), b"small");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("all passed"), "{said}");

    // restic lists and checks the same bucket, taking its own lock there (RGW takes restic's
    // aws-chunked uploads, which s3api does not).
    let restic = |args: &[&str]| {
        let out = std::process::Command::new("restic")
            .args(["-r", &place, "--password-file"])
            .arg(s.path("password"))
            .args(args)
            .envs(env)
            .output()
            .unwrap();
        assert!(out.status.success(), "restic {args:?}: {out:?}");
        out
    };
    let listed: serde_json::Value =
        serde_json::from_slice(&restic(&["snapshots", "--json"]).stdout).unwrap();
    assert!(listed.as_array().unwrap().len() >= 4, "{listed}");
    restic(&["check", "--read-data"]);

    let done = summary(&ok(&["forget", "--keep-last", "1", "--prune", "--json"]));
    assert_eq!(done["forgotten"], 1, "{done}");
    ok(&["check", "--read-data"]);

    let mut wrong = command(&["snapshots"]);
    wrong.env("AWS_SECRET_ACCESS_KEY", "not-the-key");
    let out = run_watching_argv(wrong, "not-the-key");
    failed_with(
        &out,
        3,
        &[&place, "refuses the credentials", "AWS_SECRET_ACCESS_KEY"],
    );
    gateway.stop();
    failed_with(
        &command(&["snapshots"]).output().unwrap(),
        3,
        &[&place, "does not answer"],
    );
}

/// Repositories on object storage, against the real Swift all-in-one: S3 through Swift's own
/// `s3api` middleware, and native Swift through tempauth. Each: refused before `init` (no
/// bucket), init creating the bucket, backup, `check --read-data`, a restore byte for byte,
/// `coffer copy` into a local repository, forget + prune, restic itself listing the snapshots, the secret in no argv nor output; a
/// wrong secret is exit 3 naming the repository and where credentials come from. A live lock
/// object of another Coffer host keeps a backup out (exit 3, naming that host; with
/// `--retry-lock`, after waiting); one stale for 31 minutes, or naming a dead process of this
/// host, is removed and the backup goes on; no lock object is left after a run. With the
/// proxy stopped: exit 3, "does not answer". Then through a real Keystone v3 (password
/// auth, the endpoint from the catalog) whose tokens live 8 s: a backup waiting 14 s for a
/// lock renews its token and completes; a wrong OS_PASSWORD is exit 3.
#[test]
fn repositories_in_s3_and_swift_object_storage() {
    use support::keystone::{self, Keystone};
    use support::swift::{REPO_KEY, REPO_USER, Swift};
    let s = Scratch::new();
    let cluster = Cluster::start(&s.path("nodes"), &["objects"]);
    let swift = Swift::start(&cluster.nodes[0]);
    let (token, account) = swift.auth_as(REPO_USER, REPO_KEY);
    let data = s.path("data");
    std::fs::create_dir_all(&data).unwrap();
    s.filesystem(&[&data]);
    let tempauth = format!("{}/auth/v1.0", swift.proxy);
    let mut repo = s.repo().display().to_string();
    let places = [
        (
            format!("s3:{}/coffer-s3/overcloud", swift.proxy),
            vec![
                ("AWS_ACCESS_KEY_ID", REPO_USER),
                ("AWS_SECRET_ACCESS_KEY", REPO_KEY),
            ],
            "AWS_SECRET_ACCESS_KEY",
            "coffer-s3",
        ),
        (
            "swift:coffer-swift:/overcloud".to_string(),
            vec![
                ("ST_AUTH", tempauth.as_str()),
                ("ST_USER", REPO_USER),
                ("ST_KEY", REPO_KEY),
            ],
            "ST_KEY",
            "coffer-swift",
        ),
    ];
    for (i, (place, env, secret_var, container)) in places.iter().enumerate() {
        s.edit_deployment(
            &format!("path = \"{repo}\""),
            &format!("path = \"{place}\""),
        );
        repo = place.clone();
        let command = |args: &[&str]| {
            let mut c = s.command(args);
            c.envs(env.iter().copied());
            c
        };
        let ok = |args: &[&str]| {
            let out = run_watching_argv(command(args), REPO_KEY);
            assert!(
                out.status.success(),
                "{place}: coffer {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out
        };
        let out = command(&["snapshots"]).output().unwrap();
        failed_with(
            &out,
            3,
            &[&format!("no repository at {place}"), "coffer init"],
        );
        ok(&["init"]);
        std::fs::write(data.join("f"), noise(i as u64, 3 << 20)).unwrap();
        let first = summary(&ok(&["backup", "--json"]))["snapshot"]
            .as_str()
            .unwrap()
            .to_string();
        std::fs::write(data.join("f"), noise(9, 1 << 20)).unwrap();
        ok(&["backup"]);
        ok(&["check", "--read-data"]);
        std::fs::remove_file(data.join("f")).unwrap();
        ok(&["restore", &first]);
        assert_eq!(
            std::fs::read(data.join("f")).unwrap(),
            noise(i as u64, 3 << 20)
        );

        // Copied off the bucket into a local repository: both snapshots, restorable there.
        let copy = s.path(&format!("copy-{i}"));
        let copy_arg = copy.display().to_string();
        ok(&["-r", &copy_arg, "init"]);
        ok(&["copy", "--to", &copy_arg]);
        let copied = ok(&["-r", &copy_arg, "snapshots", "--json"]);
        assert_eq!(String::from_utf8_lossy(&copied.stdout).lines().count(), 2);

        // restic reads the same bucket: the layout is restic's. (`--no-lock`: restic 0.14's
        // S3 client uploads with aws-chunked signing, which s3api does not take.)
        let mut restic = std::process::Command::new("restic");
        restic
            .args([
                "-r",
                place,
                "snapshots",
                "--no-lock",
                "--json",
                "--password-file",
            ])
            .arg(s.path("password"))
            .envs(env.iter().copied());
        let out = restic.output().unwrap();
        assert!(out.status.success(), "restic {place}: {out:?}");
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(listed.as_array().unwrap().len() >= 4, "{listed}");

        // Another Coffer host's live lock keeps a backup out, naming it.
        let lock_url = format!("{account}/{container}/overcloud/coffer-locks/0a1b");
        let plant = |minutes_ago: i64, host: &str, pid: u32| {
            let at = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(minutes_ago);
            let body =
                format!(r#"{{"host":"{host}","pid":{pid},"since":"{at}","refreshed":"{at}"}}"#);
            let out = std::process::Command::new("curl")
                .args([
                    "-sS",
                    "-f",
                    "-X",
                    "PUT",
                    "-H",
                    &format!("X-Auth-Token: {token}"),
                ])
                .args(["--data-binary", &body, &lock_url])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        };
        plant(1, "undercloud-2", 4242);
        let out = command(&["backup"]).output().unwrap();
        failed_with(
            &out,
            3,
            &[
                "in use by a coffer run on undercloud-2 (pid 4242) since",
                "--retry-lock",
            ],
        );
        let out = command(&["backup", "--retry-lock", "2s"]).output().unwrap();
        failed_with(&out, 3, &["still in use by a coffer run on undercloud-2"]);
        plant(31, "undercloud-2", 4242);
        let out = ok(&["backup"]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("removing the stale lock"),
            "{out:?}"
        );
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        plant(1, host.trim(), 4_000_000);
        ok(&["backup"]);
        let left = std::process::Command::new("curl")
            .args(["-sS", "-f", "-H", &format!("X-Auth-Token: {token}")])
            .arg(format!(
                "{account}/{container}?prefix=overcloud/coffer-locks/"
            ))
            .output()
            .unwrap();
        assert!(left.status.success() && left.stdout.is_empty(), "{left:?}");

        let done = summary(&ok(&["forget", "--keep-last", "1", "--prune", "--json"]));
        assert_eq!(done["forgotten"], 3, "{done}");

        let mut wrong = command(&["snapshots"]);
        wrong.env(secret_var, "not-the-key");
        let out = run_watching_argv(wrong, "not-the-key");
        failed_with(&out, 3, &[place, "refuses the credentials", secret_var]);
    }

    // Keystone v3 as an overcloudrc gives it, with tokens that live 8 s: a backup that waits
    // 14 s for another host's lock renews its token on the way and completes.
    let keystone = Keystone::start(&s.path("keystone"), 8);
    keystone.add_swift(&swift.proxy);
    swift.use_keystone(&keystone.url);
    s.edit_deployment(
        &format!("path = \"{repo}\""),
        "path = \"swift:coffer-keystone:/overcloud\"",
    );
    let env = keystone.admin_env();
    let command = |args: &[&str]| {
        let mut c = s.command(args);
        c.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        c.env("COFFER_LOG", "info,coffer_repository=debug");
        c
    };
    for args in [&["init"][..], &["backup"]] {
        let out = run_watching_argv(command(args), keystone::ADMIN_PASSWORD);
        assert!(
            out.status.success(),
            "{args:?}: {out:?}\n{}",
            swift.proxy_log()
        );
    }
    let at = jiff::Timestamp::now();
    let body = format!(r#"{{"host":"undercloud-2","pid":7,"since":"{at}","refreshed":"{at}"}}"#);
    // A token of its own each time: they live 8 s.
    let curl = |method: &str, extra: &[&str]| {
        let (token, account) = keystone.swift_access();
        let lock_url = format!("{account}/coffer-keystone/overcloud/coffer-locks/0a1b");
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-f",
                "-X",
                method,
                "-H",
                &format!("X-Auth-Token: {token}"),
            ])
            .args(extra)
            .arg(&lock_url)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    curl("PUT", &["--data-binary", &body]);
    let waiting = command(&["backup", "--retry-lock", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(14));
    curl("DELETE", &[]);
    let out = waiting.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("in use by a coffer run on undercloud-2")
            && err.contains("renewing the Swift token")
            && !err.contains(keystone::ADMIN_PASSWORD),
        "{err}"
    );
    let out = command(&["snapshots", "--json"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        2,
        "{out:?}"
    );
    let mut wrong = command(&["snapshots"]);
    wrong.env("OS_PASSWORD", "not-the-password");
    let out = run_watching_argv(wrong, "not-the-password");
    failed_with(
        &out,
        3,
        &[
            "swift:coffer-keystone:/overcloud",
            "refuses the credentials (401)",
            "OS_PASSWORD",
        ],
    );

    swift.stop();
    let out = command(&["snapshots"]).output().unwrap();
    failed_with(
        &out,
        3,
        &["swift:coffer-keystone:/overcloud", "does not answer"],
    );
}

#[test]
fn rabbitmq_tutorial_plugin_brings_deleted_definitions_back() {
    use support::rabbitmq::Rabbitmq;
    let s = Scratch::new();
    let cluster = Cluster::start_isolated(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    let mq = Rabbitmq::start(node);
    std::fs::write(node.own("/tmp").join("defs.json"), RABBIT_DEFINITIONS).unwrap();
    mq.ctl("import_definitions /tmp/defs.json");
    let state = || {
        [
            "list_vhosts name",
            "list_users",
            "list_permissions -p nova",
            "list_queues -p nova name durable type",
            "list_exchanges -p nova name type",
            "list_bindings -p nova source_name destination_name routing_key",
            "list_policies -p nova",
        ]
        .map(|q| mq.ctl(&format!("--no-table-headers {q}")))
        .join("\n")
    };
    // The import is asynchronous: wait for the last object.
    for _ in 0..100 {
        if mq
            .ctl("--no-table-headers list_policies -p nova")
            .contains("ha-all")
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let before = state();
    assert!(
        before.contains("scheduler") && before.contains("conductor.#"),
        "{before}"
    );

    // The tutorial's plugin, installed as a service team's plugin is: granted what it asks.
    s.install_fixture("coffer-plugin-rabbitmq");
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        "[plugin.rabbitmq.grant]\ncommands = [\"rabbitmqctl **\", \"sleep 1\"]\n",
    );
    s.init();
    // The team's first run on a real node: backup and validate into a throwaway repository.
    let out = s.ok(&["plugin", "test", "rabbitmq", "--node", "controller-0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rabbitmq: backup ok, 1 artifact(s)") && err.contains("throwaway"),
        "{err}"
    );
    assert_eq!(
        s.snapshot_count(),
        0,
        "the deployment's repository is untouched"
    );
    let out = run_watching_argv(s.command(&["backup", "--json"]), "s3cret-rabbit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(artifact_fields(&out, "name"), ["definitions.json"]);
    s.ok(&["validate", "latest"]);

    // The vhost (with its queues, exchange, binding, policy) and the user are deleted.
    mq.ctl("delete_vhost nova");
    mq.ctl("delete_user nova-svc");
    let out = s.run(&["validate", "latest"]);
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing: nova/conductor"));
    s.ok(&["restore", "latest"]);
    assert_eq!(state(), before);
    // The password came back as its hash: the user still logs in with it.
    mq.ctl("authenticate_user nova-svc s3cret-rabbit");

    // The broker down: a clear error, nothing kept.
    node.sh("/usr/local/sbin/systemctl stop rabbitmq-server");
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("rabbitmq") && err.contains("no RabbitMQ broker answers"),
        "{err}"
    );
    assert_eq!(s.snapshot_count(), 1);
}

#[test]
fn a_failed_restore_resumes_from_the_plugin_that_failed() {
    let s = Scratch::new();
    let cluster = Cluster::start_isolated(&s.path("nodes"), &["controller-0"]);
    let node = &cluster.nodes[0];
    let redis = Redis::start(node, PASSWORD, "");
    redis.fill(60000);
    let file = node.own("/srv/node").join("account.conf");
    std::fs::write(&file, "backed-up\n").unwrap();
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &format!(
            "[plugin.filesystem.settings]\npaths = [\"/srv/node\"]\n\n\
             [plugin.redis.settings]\npassword = {PASSWORD:?}\ndir = {DIR:?}\n"
        ),
    );
    s.init();
    s.ok(&["backup"]);

    // Both lost; and Redis's directory is now a 1 MiB filesystem: its restore will fail.
    std::fs::write(&file, "lost\n").unwrap();
    redis.cli(&["FLUSHALL"]);
    redis.cli(&["SAVE"]);
    on_tiny_disk(node);
    let out = s.run(&["restore", "latest"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "backed-up\n");
    let run = err
        .split("coffer restore --resume ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no resume hint in: {err}"))
        .trim_matches('`')
        .to_string();
    assert!(err.contains("restored so far: filesystem"), "{err}");
    // The journal recorded each plugin's start and end durably: redis started, never done.
    let journal: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.path(&format!("state/restores/{run}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        journal["started"],
        serde_json::json!(["filesystem", "redis"])
    );
    assert_eq!(journal["done"], serde_json::json!(["filesystem"]));
    assert_eq!(journal["failed"], "redis");

    // The file changes again: a resumed restore must not redo the filesystem step.
    std::fs::write(&file, "changed after the first restore\n").unwrap();
    off_tiny_disk(node);
    // (--no-validate: the filesystem's check would rightly see the file changed since.)
    let out = s.ok(&["restore", "--resume", &run, "--no-validate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("done in run {run}")), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "changed after the first restore\n"
    );
    assert_eq!(redis.cli(&["DBSIZE"]), "60000");
    let out = s.run(&["restore", "--resume", &run]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to resume"));
}
