//! Services in containers: a plugin's exec and stream calls run inside a real podman container
//! when the deployment names one, through the very same plugin call as on the bare node.

mod support;

use std::fs;
use std::process::Command;

use sha2::{Digest, Sha256};
use support::*;

/// A running podman container made from a busybox root filesystem (no registry needed).
struct Container {
    name: String,
    image: String,
}

impl Container {
    fn start(dir: &std::path::Path, marker: &str) -> Self {
        Self::start_labelled(dir, marker, "coffer.test=unlabelled")
    }

    /// [`Container::start`] with the label `label` (`KEY=VALUE`).
    fn start_labelled(dir: &std::path::Path, marker: &str, label: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("coffer-test-{}-{n}", std::process::id());
        let rootfs = dir.join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::create_dir_all(rootfs.join("etc")).unwrap();
        fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static is installed (scripts/test.sh installs it)");
        for tool in ["sh", "cat", "echo", "sleep", "mkdir", "tar", "test"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
        }
        fs::write(rootfs.join("etc/marker"), marker).unwrap();
        sh(&format!(
            "tar -C {} -c . | podman import -q - {tag}:latest >/dev/null",
            rootfs.display()
        ));
        // This VM needs runc and cgroupfs (see FIELD-NOTES); `podman exec` then needs nothing.
        sh(&format!(
            "podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs run -d --name {tag} \
             --label {label} --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 {tag}:latest /bin/sleep 100000 >/dev/null"
        ));
        Self {
            name: tag.clone(),
            image: format!("{tag}:latest"),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

fn plugin_sections(container: Option<&str>, role: &str) -> String {
    let section = container
        .map(|c| {
            format!(
                "[plugin.hostile.container]\nruntime = \"podman\"\nname = \"{c}\"\nroles = [\"{role}\"]\n\n"
            )
        })
        .unwrap_or_default();
    format!(
        "[plugin.hostile.grant]\ncommands = [\"cat /etc/marker\"]\n\n{section}\
         [plugin.hostile.settings]\nmode = \"marker\"\n"
    )
}

fn deployment(s: &Scratch, container: Option<&str>) {
    s.deployment(&plugin_sections(container, "undercloud"));
}

#[test]
fn exec_and_stream_run_inside_the_named_podman_container() {
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-hostile");
    let marker = format!("inside container {}\n", std::process::id());
    let container = Container::start(&s.path("image"), &marker);

    // On the bare node there is no /etc/marker: the same plugin call finds nothing.
    deployment(&s, None);
    s.init();
    s.ok(&["backup"]);
    let show = |id: &str| {
        let out = s.ok(&["snapshots", "show", id, "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let bare = show("latest");
    assert_eq!(bare["manifest"]["plugins"][0]["records"][0][1], "missing");
    assert!(bare["manifest"]["artifacts"].as_array().unwrap().is_empty());

    // In the container, the exec sees the container's file and the stream captures it.
    deployment(&s, Some(&container.name));
    let out = s.ok(&["backup", "--json", "--verbose"]);
    let m = &summary(&out);
    let inside = show(m["snapshot"].as_str().unwrap());
    assert_eq!(
        inside["manifest"]["plugins"][0]["records"][0][1],
        marker.as_str()
    );
    let artifact = &inside["manifest"]["artifacts"][0];
    assert_eq!(artifact["size"], marker.len());
    assert_eq!(
        artifact["sha256"].as_str().unwrap(),
        Sha256::digest(marker.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // And the operator sees where it ran.
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        events.contains(&format!(
            "\"podman\",\"exec\",\"-i\",\"{}\",\"cat\"",
            container.name
        )),
        "{events}"
    );
}

#[test]
fn a_container_on_an_ssh_node_is_reached_the_same_way() {
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-hostile");
    let marker = format!("container behind ssh {}\n", std::process::id());
    let container = Container::start(&s.path("image"), &marker);
    let cluster = support::nodes::Cluster::start(&s.path("nodes"), &["controller-0"]);
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        &plugin_sections(Some(&container.name), "controller"),
    );
    s.init();
    let out = s.ok(&["backup", "--json"]);
    let artifact = &summary(&out)["artifacts"][0];
    assert_eq!(artifact["node"], "controller-0");
    assert_eq!(artifact["size"], marker.len());
    let shown = s.ok(&["snapshots", "show", "latest", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        v["manifest"]["plugins"][0]["records"][0][1],
        marker.as_str()
    );

    // Logged in as an unprivileged user, root's container is reached through `sudo -n podman
    // exec`; without `become`, that user's podman does not know it.
    support::nodes::login_user("coffer-op", true);
    cluster.allow_other_logins();
    s.edit_deployment("user = \"root\"", "user = \"coffer-op\"\nbecome = \"sudo\"");
    let out = s.ok(&["backup", "--json"]);
    assert_eq!(summary(&out)["artifacts"][0]["size"], marker.len());
    s.edit_deployment("become = \"sudo\"", "become = \"none\"");
    let out = summary(&s.ok(&["backup", "--json"]));
    // The plugin records the marker as missing and stores nothing.
    assert_eq!(out["artifacts"].as_array().unwrap().len(), 0, "{out}");
}

/// Pacemaker bundles and kolla name containers per node or by label: a glob or a filter is
/// found on each node at the start of a run, and none or several matching is refused before
/// anything runs.
#[test]
fn a_container_is_found_by_a_glob_or_a_filter_before_the_run() {
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-hostile");
    let pid = std::process::id();
    let a = Container::start_labelled(&s.path("a"), "in a\n", &format!("coffer.found={pid}-a"));
    let b = Container::start_labelled(&s.path("b"), "in b\n", &format!("coffer.found={pid}-b"));
    let with = |container: &str| {
        s.deployment(&format!(
            "[plugin.hostile.container]\nruntime = \"podman\"\n{container}\n\
             [plugin.hostile.grant]\ncommands = [\"cat /etc/marker\"]\n\n\
             [plugin.hostile.settings]\nmode = \"marker\"\n"
        ));
    };
    let marker = |out: &std::process::Output| {
        let id = summary(out)["snapshot"].as_str().unwrap().to_string();
        let shown = s.ok(&["snapshots", "show", &id, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
        v["manifest"]["plugins"][0]["records"][0][1]
            .as_str()
            .unwrap()
            .to_string()
    };
    with(&format!("filter = \"label=coffer.found={pid}-a\"\n"));
    s.init();
    let out = s.ok(&["backup", "--json"]);
    assert_eq!(marker(&out), "in a\n");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("runs in container {}", a.name)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    with(&format!("name = \"{}*\"\n", b.name));
    assert_eq!(marker(&s.ok(&["backup", "--json"])), "in b\n");

    // Both carry the label: the glob matches two, and nothing runs.
    with(&format!(
        "name = \"coffer-test-{pid}-*\"\nfilter = \"label=coffer.found\"\n"
    ));
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("plugin `hostile`: finding its container")
            && err.contains("on node local: 2 running containers match")
            && err.contains(&a.name)
            && err.contains(&b.name),
        "{err}"
    );
    with(&format!("name = \"coffer-test-{pid}-none-*\"\n"));
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no running container matches"), "{err}");
    assert_eq!(s.snapshot_count(), 2);
}

/// A minimal container with BusyBox's `tar` and no `find`: backing up its paths stops with an
/// error naming the node, what is missing and what Coffer needs of it, and keeps nothing.
#[test]
fn paths_in_a_container_without_gnu_tar_are_refused_saying_why() {
    let s = Scratch::new();
    let container = Container::start(&s.path("image"), "marker\n");
    s.deployment(&format!(
        "[plugin.filesystem.settings]\npaths = [\"/etc\"]\n\n\
         [plugin.filesystem.container]\nruntime = \"podman\"\nname = \"{}\"\n",
        container.name
    ));
    s.init();
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("the `find` on node local is not GNU find (no `find` there)")
            && err.contains("-printf"),
        "{err}"
    );
    assert_eq!(s.snapshot_count(), 0);
}

/// A MariaDB server in a podman container, its datadir on a named volume: the container's root
/// filesystem is this machine's (an overlay on `/`, so the packaged MariaDB runs in it without
/// a registry); removed with its volume when dropped.
struct MariadbContainer {
    name: String,
    volume: String,
}

const PODMAN: &str = "podman --runtime /usr/sbin/runc --cgroup-manager=cgroupfs";
const LIMITS: &str = "--ulimit nofile=1024:1024 --ulimit nproc=1024:1024";

impl MariadbContainer {
    fn start() -> Self {
        // Tests of one binary run at once: each server its own container and volume.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let (name, volume) = (
            format!("coffer-mariadb-{pid}-{n}"),
            format!("coffer-db-{pid}-{n}"),
        );
        sh(&format!(
            "podman volume create {volume} >/dev/null && \
             {PODMAN} run --rm {LIMITS} -v {volume}:/var/lib/mysql --rootfs /:O /bin/sh -c \
             'mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null'"
        ));
        sh(&format!(
            "{PODMAN} run -d --name {name} {LIMITS} -v {volume}:/var/lib/mysql --rootfs /:O \
             /bin/sh -c 'mkdir -p /run/mysqld && chown mysql /run/mysqld && exec mariadbd \
             --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
             --skip-networking --innodb-buffer-pool-size=64M' >/dev/null"
        ));
        let db = Self { name, volume };
        let started = std::time::Instant::now();
        while !Command::new("podman")
            .args(["exec", &db.name, "mariadb", "-e", "SELECT 1"])
            .output()
            .unwrap()
            .status
            .success()
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "MariaDB in {} never answered",
                db.name
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        db
    }

    /// Run SQL as root inside the container; its tab-separated rows.
    fn sql(&self, sql: &str) -> String {
        let out = Command::new("podman")
            .args(["exec", &self.name, "mariadb", "-N", "-B", "-e", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for MariadbContainer {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
        let _ = Command::new("podman")
            .args(["volume", "rm", "-f", &self.volume])
            .output();
    }
}

/// TripleO's undercloud and kolla run MariaDB in a container: the mysql plugin dumps through
/// it and imports back through it (`restore-mode = "import"`), so a server whose databases and
/// accounts are gone gets them back, checksums equal.
#[test]
fn mariadb_in_a_podman_container_on_a_named_volume_comes_back_through_import() {
    let db = MariadbContainer::start();
    db.sql(
        "CREATE DATABASE nova; USE nova; \
         CREATE TABLE nova.instances (id INT PRIMARY KEY, host VARCHAR(64)); \
         INSERT INTO nova.instances SELECT seq, CONCAT('compute-', seq % 7) FROM seq_1_to_20000; \
         CREATE USER 'nova'@'%' IDENTIFIED BY 'n0va-secret'; \
         GRANT SELECT, INSERT ON nova.* TO 'nova'@'%'",
    );
    let state = || db.sql("CHECKSUM TABLE nova.instances") + &db.sql("SHOW GRANTS FOR 'nova'@'%'");
    // An account that may change every table but grant nothing (no GRANT OPTION).
    db.sql("CREATE USER 'importer'@'localhost' IDENTIFIED BY 'imp0rt-pw'; GRANT ALL ON *.* TO 'importer'@'localhost'");
    let before = state();
    let s = Scratch::new();
    let deployment = |extra: &str| {
        s.deployment(&format!(
            "[plugin.mysql.container]\nruntime = \"podman\"\nname = \"{}\"\n\n\
             [plugin.mysql.settings]\nrestore-mode = \"import\"\n{extra}",
            db.name
        ))
    };
    deployment("");
    s.init();
    let out = s.ok(&["backup", "--json", "--verbose"]);
    let names = artifact_fields(&out, "name");
    assert!(names.contains(&"databases.sql".to_string()), "{names:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "\"podman\",\"exec\",\"-i\",\"{}\",\"mysqldump\"",
            db.name
        )),
        "the dump runs inside the container"
    );
    db.sql("DROP DATABASE nova; DROP USER 'nova'@'%'");
    assert!(!db.sql("SHOW DATABASES").contains("nova"));

    // Imported by the account that cannot grant: the databases come back, the grants cannot,
    // and the error says so; the role mysqldump's script gave the account is gone again.
    deployment("user = \"importer\"\npassword = \"imp0rt-pw\"\n");
    let out = s.run(&["restore", "latest"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("the databases were imported, the accounts and grants were not")
            && err.contains("mariadb_dump_import_role was dropped"),
        "{err}"
    );
    assert!(db.sql("SHOW DATABASES").contains("nova"));
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM mysql.roles_mapping WHERE Role = 'mariadb_dump_import_role'")
            .trim(),
        "0"
    );
    deployment("");
    s.ok(&["restore", "latest"]);
    assert_eq!(state(), before);
}

/// The disaster a containerised server meets: its datadir gone and the container unable to
/// start. The mysql plugin's `reinit` restore works from the node around the container
/// (contract 2.2's `container`): stop it, move the volume's directory aside, create a new one,
/// initialise it with a one-shot container of the same root filesystem and volumes, start the
/// container, import — checksums and grants equal, the lost directory kept aside.
#[test]
fn mariadb_in_a_podman_container_comes_back_from_a_lost_datadir() {
    let db = MariadbContainer::start();
    db.sql(
        "CREATE DATABASE keystone; USE keystone; \
         CREATE TABLE keystone.project (id INT PRIMARY KEY, name VARCHAR(64)); \
         INSERT INTO keystone.project SELECT seq, CONCAT('project-', seq) FROM seq_1_to_5000; \
         CREATE USER 'keystone'@'%' IDENTIFIED BY 'k3y-secret'; \
         GRANT ALL ON keystone.* TO 'keystone'@'%'",
    );
    let state =
        || db.sql("CHECKSUM TABLE keystone.project") + &db.sql("SHOW GRANTS FOR 'keystone'@'%'");
    let before = state();
    let s = Scratch::new();
    s.deployment(&format!(
        "[plugin.mysql.container]\nruntime = \"podman\"\nname = \"{}\"\n",
        db.name
    ));
    // The coffer host's podman needs this machine's settings (runc, cgroupfs, ulimits) for
    // the `stop`, `start` and one-shot `run` the restore does on the node.
    let conf = s.path("containers.conf");
    fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
         [engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\n",
    )
    .unwrap();
    let coffer = |args: &[&str]| s.ok_with(args, "CONTAINERS_CONF", &conf);
    s.init();
    coffer(&["backup"]);

    // The disaster: the server stopped and its datadir emptied; the container cannot start.
    let source = String::from_utf8(
        Command::new("podman")
            .args([
                "volume",
                "inspect",
                &db.volume,
                "--format",
                "{{.Mountpoint}}",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    sh(&format!("podman stop -t 30 {} >/dev/null", db.name));
    sh(&format!("find {source} -mindepth 1 -delete"));
    let start = Command::new("podman")
        .args(["start", &db.name])
        .env("CONTAINERS_CONF", &conf)
        .output()
        .unwrap();
    let alive = start.status.success()
        && Command::new("podman")
            .args(["exec", &db.name, "mariadb", "-e", "SELECT 1"])
            .output()
            .unwrap()
            .status
            .success();
    assert!(!alive, "a server without its datadir answered");
    // mariadbd may still be writing its own files into the empty datadir as it gives up:
    // wait until the container has stopped, so the directory holds still for the dry run.
    sh(&format!("podman stop -t 30 {} >/dev/null", db.name));

    // The plan first: every step on the node, nothing done. (The failed start left a few
    // files of mariadbd's own.)
    let entries = || {
        let mut v: Vec<_> = fs::read_dir(&source)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let wreck = entries();
    assert!(!wreck.iter().any(|e| e == "keystone"), "{wreck:?}");
    let plan = String::from_utf8(coffer(&["restore", "latest", "--dry-run"]).stdout).unwrap();
    for step in [
        format!("podman stop -t 120 {}", db.name),
        format!("mv -T {source} {source}.before-restore-"),
        format!(
            "podman run --rm --volumes-from {} --rootfs /:O mariadb-install-db",
            db.name
        ),
        format!("podman start {}", db.name),
    ] {
        assert!(plan.contains(&step), "no `{step}` in the plan:\n{plan}");
    }
    assert_eq!(entries(), wreck, "the dry run changed nothing");

    coffer(&["restore", "latest"]);
    assert_eq!(state(), before);
    let parent = std::path::Path::new(&source).parent().unwrap();
    assert!(
        fs::read_dir(parent).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("_data.before-restore-")),
        "the lost datadir is kept aside"
    );
    coffer(&["validate", "latest"]);
}

/// TripleO's undercloud: MariaDB in the `mysql` container, run by the systemd unit
/// `tripleo_mysql.service` (`Restart=always`: a container stopped behind the unit's back is
/// started again, here by the `systemctl` stand-in's supervisor) on an isolated SSH node with
/// its own podman. The unit is found from podman's `PODMAN_SYSTEMD_UNIT` label; the datadir is
/// lost and the container crash-loops; the restore stops and starts the container through the
/// unit — the supervisor never has to restart it during the restore — and the data comes back.
#[test]
fn a_container_run_by_a_systemd_unit_is_stopped_and_started_through_the_unit() {
    use support::mariadb::{IMAGE, check, container_image};
    use support::systemctl::{container_unit, container_unit_restarts};
    let s = Scratch::new();
    let cluster = support::nodes::Cluster::start_isolated(&s.path("nodes"), &["undercloud"]);
    let node = &cluster.nodes[0];
    container_image(node);
    check(
        node.sh(&format!(
            "set -e; podman volume create mysql-data >/dev/null
             podman run --rm -v mysql-data:/var/lib/mysql -v /usr:/usr:ro --entrypoint \
               mariadb-install-db {IMAGE} --user=mysql --datadir=/var/lib/mysql --skip-test-db \
               >/dev/null
             podman create --name mysql --label PODMAN_SYSTEMD_UNIT=tripleo_mysql.service \
               -v mysql-data:/var/lib/mysql -v /usr:/usr:ro --network host {IMAGE} \
               /coffer-run-mariadbd --skip-networking >/dev/null"
        )),
        "creating the mysql container",
    );
    container_unit(node, "tripleo_mysql", "podman", "mysql");
    let sql = |q: &str| {
        check(
            node.sh(&format!("podman exec mysql mariadb -N -B -e \"{q}\"")),
            q,
        )
    };
    let up = || {
        node.sh("podman exec mysql mariadb -e 'SELECT 1'")
            .status
            .success()
    };
    check(
        node.sh("systemctl start tripleo_mysql"),
        "starting the unit",
    );
    let started = std::time::Instant::now();
    while !up() {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    sql(
        "CREATE DATABASE keystone; USE keystone; CREATE TABLE keystone.project (id INT PRIMARY KEY, \
         name VARCHAR(64)); INSERT INTO keystone.project SELECT seq, CONCAT('project-', seq) \
         FROM seq_1_to_5000; CREATE USER 'keystone'@'%' IDENTIFIED BY 'k3y-secret'; \
         GRANT ALL ON keystone.* TO 'keystone'@'%'",
    );
    let state = || sql("CHECKSUM TABLE keystone.project") + &sql("SHOW GRANTS FOR 'keystone'@'%'");
    let before = state();
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["undercloud"]),
        "[plugin.mysql.container]\nruntime = \"podman\"\nname = \"mysql\"\n",
    );
    s.init();
    s.ok(&["backup"]);

    // The disaster: the datadir emptied under the unit; the container now crash-loops.
    check(
        node.sh("systemctl stop tripleo_mysql && \
             find $(podman volume inspect mysql-data --format '{{.Mountpoint}}') -mindepth 1 \
               -delete && systemctl start tripleo_mysql"),
        "losing the datadir",
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!up(), "a server without its datadir answered");

    let plan = String::from_utf8(s.ok(&["restore", "latest", "--dry-run"]).stdout).unwrap();
    assert!(
        plan.contains("systemctl stop tripleo_mysql.service")
            && plan.contains("systemctl start tripleo_mysql.service")
            && !plan.contains("podman stop"),
        "{plan}"
    );
    let out = s.ok(&["restore", "latest"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("run by systemd unit tripleo_mysql.service"),
        "{log}"
    );
    // The unit is active again and its server stays up: its supervisor restarts nothing.
    assert_eq!(
        check(node.sh("systemctl is-active tripleo_mysql"), "is-active").trim(),
        "active"
    );
    let restarts = container_unit_restarts(node, "tripleo_mysql");
    assert_eq!(state(), before);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(container_unit_restarts(node, "tripleo_mysql"), restarts);
    s.ok(&["validate", "latest"]);
    let _ = node.sh("systemctl stop tripleo_mysql");
}

/// The same disaster with Docker (Debian's `dockerd`, started by the test): MariaDB in a docker
/// container on a named volume, the volume emptied; the default `reinit` restore runs the same
/// steps through `docker` — stop, the volume's directory aside, a one-shot `docker run --rm
/// --volumes-from NAME --entrypoint mariadb-install-db IMAGE`, start, import.
#[test]
fn mariadb_in_a_docker_container_comes_back_from_a_lost_datadir() {
    use support::mariadb::image_root;
    let s = Scratch::new();
    let engine = support::docker::Dockerd::start(&s.path("docker"));
    image_root(&s.path("image"));
    let image = "coffer-mariadb:latest";
    let mounts = "--network none -v coffer-db:/var/lib/mysql -v /usr:/usr:ro";
    engine.sh(&format!(
        "set -e; tar -C {} -c . | docker import - {image} >/dev/null
         docker volume create coffer-db >/dev/null
         docker run --rm {mounts} --entrypoint mariadb-install-db {image} --user=mysql \
           --datadir=/var/lib/mysql --skip-test-db >/dev/null
         docker run -d --name mariadb {mounts} {image} /coffer-run-mariadbd --skip-networking \
           >/dev/null",
        s.path("image").display()
    ));
    let sql = |q: &str| engine.sh(&format!("docker exec mariadb mariadb -N -B -e \"{q}\""));
    let up = || {
        engine
            .docker(&["exec", "mariadb", "mariadb", "-e", "SELECT 1"])
            .status
            .success()
    };
    let started = std::time::Instant::now();
    while !up() {
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    sql(
        "CREATE DATABASE keystone; USE keystone; CREATE TABLE keystone.project (id INT \
         PRIMARY KEY, name VARCHAR(64)); INSERT INTO keystone.project SELECT seq, \
         CONCAT('project-', seq) FROM seq_1_to_5000; CREATE USER 'keystone'@'%' IDENTIFIED \
         BY 'k3y-secret'; GRANT ALL ON keystone.* TO 'keystone'@'%'",
    );
    let state = || sql("CHECKSUM TABLE keystone.project") + &sql("SHOW GRANTS FOR 'keystone'@'%'");
    let before = state();
    s.deployment("[plugin.mysql.container]\nruntime = \"docker\"\nname = \"mariadb\"\n");
    let (key, value) = engine.env();
    let coffer = |args: &[&str]| s.ok_with(args, key, &value);
    s.init();
    coffer(&["backup"]);

    // The disaster: the volume emptied; the container cannot serve.
    let source = engine
        .sh("docker volume inspect coffer-db --format '{{.Mountpoint}}'")
        .trim()
        .to_string();
    engine.sh(&format!(
        "docker stop -t 30 mariadb >/dev/null && find {source} -mindepth 1 -delete && \
         (docker start mariadb >/dev/null || true) && sleep 2 && docker stop -t 30 mariadb \
         >/dev/null"
    ));
    assert!(!up(), "a server without its datadir answered");

    let plan = String::from_utf8(coffer(&["restore", "latest", "--dry-run"]).stdout).unwrap();
    for step in [
        "docker stop -t 120 mariadb".to_string(),
        format!("mv -T {source} {source}.before-restore-"),
        format!(
            "docker run --rm --volumes-from mariadb --user root --entrypoint mariadb-install-db {image}"
        ),
        "docker start mariadb".to_string(),
    ] {
        assert!(plan.contains(&step), "no `{step}` in the plan:\n{plan}");
    }
    coffer(&["restore", "latest"]);
    assert_eq!(state(), before);
    coffer(&["validate", "latest"]);
}

/// TripleO's controllers: Galera in Pacemaker's `galera-bundle`, each member in the container
/// the bundle named on its node (see `support::galera_bundle` for what is real). Backed up
/// through a member's container; every member's datadir lost; restored with the containers
/// found by pattern per node, the bundle held away from Pacemaker, a new datadir behind each
/// container's bind mount, a one-shot server bootstrapping under a member's container name,
/// the others joining; then the members' own containers run a Synced cluster of 3 with every
/// table, grant, view and procedure, and Pacemaker has its bundle back.
#[test]
fn galera_in_a_pacemaker_bundle_comes_back_from_lost_datadirs() {
    use support::galera_bundle::{GaleraBundle, NODE_DATADIR};
    use support::mariadb::{SCHEMA, state_by};
    let _turn = support::mariadb::one_galera_at_a_time();
    let s = Scratch::new();
    let cluster = support::nodes::Cluster::start_isolated(
        &s.path("nodes"),
        &["controller-0", "controller-1", "controller-2"],
    );
    let bundle = GaleraBundle::start(&cluster.nodes);
    bundle.sql(0, SCHEMA);
    let state =
        |i: usize| state_by(|q| bundle.sql(i, &format!("SET SESSION wsrep_sync_wait = 1; {q}")));
    let before = state(0);
    let names: Vec<String> = (0..3).map(|i| bundle.container(i)).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "galera-bundle-podman-0",
            "galera-bundle-podman-1",
            "galera-bundle-podman-2"
        ]
    );
    s.deployment_with_nodes(
        &cluster.deployment_nodes(&["controller"]),
        "[plugin.galera.container]\nruntime = \"podman\"\nname = \"galera-bundle-podman-*\"\n\n\
         [plugin.galera.settings]\npacemaker-resource = \"galera-bundle\"\n",
    );
    s.init();
    let out = s.ok(&["backup", "--json", "--verbose"]);
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        names
            .iter()
            .any(|n| events.contains(&format!("\"podman\",\"exec\",\"-i\",\"{n}\",\"mysqldump\""))),
        "the dump is taken through a member's container: {events}"
    );
    s.ok(&["validate", "latest"]);

    // The disaster: the databases and the account dropped (the cluster replicates it), then
    // every member's datadir emptied under its running server.
    bundle.sql(
        1,
        "DROP DATABASE nova; DROP DATABASE keystone; DROP USER 'nova'@'%'",
    );
    bundle.wait_synced(3);
    for i in 0..3 {
        let databases = bundle.sql(i, "SET SESSION wsrep_sync_wait = 1; SHOW DATABASES");
        assert!(!databases.contains("nova"), "{databases}");
    }
    for n in &cluster.nodes {
        check_sh(n, &format!("find {NODE_DATADIR} -mindepth 1 -delete"));
    }
    let listing = |n: &support::nodes::Node| check_sh(n, &format!("ls -a {NODE_DATADIR}"));
    let wreck: Vec<String> = cluster.nodes.iter().map(listing).collect();

    // The plan first: each member's steps on its node, nothing done.
    let plan = String::from_utf8(s.ok(&["restore", "latest", "--dry-run"]).stdout).unwrap();
    for step in [
        "pcs resource unmanage galera-bundle".to_string(),
        format!("podman stop -t 120 {}", names[0]),
        format!("mv -T {NODE_DATADIR} {NODE_DATADIR}.before-restore-"),
        "--entrypoint mariadb-install-db localhost/coffer-mariadb:latest".to_string(),
        "--wsrep-new-cluster".to_string(),
        format!("podman start {}", names[2]),
    ] {
        assert!(plan.contains(&step), "no `{step}` in the plan:\n{plan}");
    }
    let after_plan: Vec<String> = cluster.nodes.iter().map(listing).collect();
    assert_eq!(after_plan, wreck, "the dry run changed nothing");
    assert_eq!(
        (0..3).map(|i| bundle.container(i)).collect::<Vec<_>>(),
        names
    );

    let out = s.ok(&["restore", "latest"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("a one-shot server bootstraps the cluster"),
        "{log}"
    );
    assert!(
        log.contains("its own container replaces the bootstrap server"),
        "{log}"
    );
    bundle.wait_synced(3);
    assert_eq!(
        (0..3).map(|i| bundle.container(i)).collect::<Vec<_>>(),
        names,
        "the members run in the bundle's own containers again"
    );
    for i in 0..3 {
        assert_eq!(state(i), before, "{}", cluster.nodes[i].name);
        assert!(
            check_sh(&cluster.nodes[i], "ls /srv/db").contains("mysql.before-restore-"),
            "the lost datadir is kept aside on {}",
            cluster.nodes[i].name
        );
    }
    // Pacemaker has the bundle back, every replica started, nothing failed or unmanaged.
    let status = bundle.pacemaker.sh("crm_mon -1");
    assert_eq!(status.matches("Started").count(), 3, "{status}");
    assert!(
        !status.contains("unmanaged") && !status.contains("Failed"),
        "{status}"
    );
    s.ok(&["validate", "latest"]);
}

/// Run `script` on `node` and require success; its stdout.
fn check_sh(node: &support::nodes::Node, script: &str) -> String {
    let out = node.sh(script);
    assert!(out.status.success(), "{script} on {}: {out:?}", node.name);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
