//! A real MariaDB server on a test node, started without systemd inside the node's mount
//! namespace: its datadir (`/srv/db/mysql`), config (`/srv/db/my.cnf`) and socket directory
//! (`/run/mysqld`) are the node's own; `systemctl start|stop mariadb` (the stand-in of
//! `systemctl.rs`) starts and stops it.

use std::path::Path;
use std::time::{Duration, Instant};

use super::nodes::Node;

/// Two databases (105k rows), a view, a stored procedure and an account with grants: what
/// the database tests back up and compare.
pub const SCHEMA: &str = "
CREATE DATABASE nova; CREATE DATABASE keystone; USE nova;
CREATE TABLE nova.instances (id INT PRIMARY KEY, uuid CHAR(32), host VARCHAR(64), vcpus INT);
INSERT INTO nova.instances SELECT seq, MD5(seq), CONCAT('compute-', seq % 7), seq % 16 FROM seq_1_to_100000;
CREATE TABLE keystone.`user` (id VARCHAR(64) PRIMARY KEY, enabled BOOL, extra TEXT);
INSERT INTO keystone.`user` SELECT SHA1(seq), seq % 2, REPEAT('x', seq % 300) FROM seq_1_to_5000;
CREATE VIEW nova.busy_hosts AS SELECT host, COUNT(*) AS n FROM nova.instances GROUP BY host;
CREATE PROCEDURE nova.count_instances(OUT n INT) SELECT COUNT(*) INTO n FROM nova.instances;
CREATE USER 'nova'@'%' IDENTIFIED BY 'n0va-secret';
GRANT SELECT, INSERT, UPDATE ON nova.* TO 'nova'@'%';
";

/// Everything the database tests compare (checksums, grants, the view and the procedure of
/// [`SCHEMA`]), each query run by `sql`.
pub fn state_by(sql: impl Fn(&str) -> String) -> String {
    [
        "CHECKSUM TABLE nova.instances, keystone.`user`",
        "SHOW GRANTS FOR 'nova'@'%'",
        "SELECT * FROM nova.busy_hosts ORDER BY host",
        "CALL nova.count_instances(@n); SELECT @n",
    ]
    .iter()
    .map(|q| sql(q))
    .collect::<Vec<_>>()
    .join("\n")
}

/// The node's datadir.
pub const DATADIR: &str = "/srv/db/mysql";

/// A MariaDB server on a node; stopped when dropped.
pub struct Mariadb {
    run_dir: std::path::PathBuf,
    /// Its error log (host path).
    pub log: std::path::PathBuf,
}

/// Require `out` to be a success (else fail naming `what`, with its output); its stdout.
pub fn check(out: std::process::Output, what: &str) -> String {
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
        let db = Self::install(node, "");
        check(
            node.sh("/usr/local/sbin/systemctl start mariadb"),
            "starting MariaDB",
        );
        db
    }

    /// Install the stand-in, the config (with `extra` lines in `[mysqld]`) and a fresh datadir
    /// on `node`, without starting the server.
    pub fn install(node: &Node, extra: &str) -> Self {
        super::systemctl::install(node);
        let log = node.own("/srv/db").join("error.log");
        std::fs::write(
            node.own("/srv/db").join("my.cnf"),
            format!(
                "[mysqld]\nuser=mysql\ndatadir={DATADIR}\nsocket=/run/mysqld/mysqld.sock\n\
                 pid-file=/run/mysqld/mysqld.pid\nbind-address={}\nport=3306\nskip-name-resolve\n\
                 log-error=/srv/db/error.log\ninnodb_buffer_pool_size=64M\n{extra}",
                node.address
            ),
        )
        .unwrap();
        check(
            node.sh(&format!(
                "mkdir -p {DATADIR} && touch /srv/db/error.log && \
                 chown -R mysql:mysql /srv/db /run/mysqld && \
                 {{ mariadb-install-db --user=mysql --datadir={DATADIR} --skip-test-db \
                 >/srv/db/install.log 2>&1 || {{ cat /srv/db/install.log; exit 1; }}; }}"
            )),
            "mariadb-install-db",
        );
        Self {
            run_dir: node.own("/run/mysqld"),
            log,
        }
    }

    /// A three-member (or more) Galera cluster on `nodes`, each member on its node's address:
    /// the first bootstrapped with the real `galera_new_cluster`, the others joined by SST.
    pub fn galera(nodes: &[&Node]) -> Vec<Self> {
        let dbs: Vec<Self> = nodes
            .iter()
            .map(|n| Self::galera_member(n, nodes))
            .collect();
        check(nodes[0].sh("galera_new_cluster"), "bootstrapping Galera");
        for n in &nodes[1..] {
            check(
                n.sh("/usr/local/sbin/systemctl start mariadb"),
                "joining Galera",
            );
        }
        wait_synced(nodes);
        dbs
    }

    /// Install `node` as a Galera member of a cluster of `members` (its address list), with a
    /// fresh datadir, without starting it: a new node joins when it starts.
    pub fn galera_member(node: &Node, members: &[&Node]) -> Self {
        // The rsync SST script waits while anything listens on its port, on any address: each
        // member its own port, so that clusters of tests running side by side never meet.
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sst, ist) = (14444 + 2 * k, 14445 + 2 * k);
        let members: Vec<String> = members
            .iter()
            .map(|n| format!("{}:4567", n.address))
            .collect();
        Self::install(
            node,
            &format!(
                "binlog_format=ROW\ndefault_storage_engine=InnoDB\ninnodb_autoinc_lock_mode=2\n\
                 wsrep_on=ON\nwsrep_provider=/usr/lib/galera/libgalera_smm.so\n\
                 wsrep_cluster_name=coffer-test\nwsrep_cluster_address=gcomm://{}\n\
                 wsrep_node_address={a}\nwsrep_node_name={}\n\
                 wsrep_provider_options=\"gmcast.listen_addr=tcp://{a}:4567;ist.recv_addr={a}:{ist}\"\n\
                 wsrep_sst_method=rsync\nwsrep_sst_receive_address={a}:{sst}\n",
                members.join(","),
                node.name,
                a = node.address
            ),
        )
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

/// Hold while a test runs a Galera cluster of several members: two such tests side by side on
/// two cores starved each other's state transfers past every timeout, so they take turns.
pub fn one_galera_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static GALERA: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GALERA.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wait until every node is Synced in one cluster of `nodes.len()` members.
pub fn wait_synced(nodes: &[&Node]) {
    let started = Instant::now();
    loop {
        let ok = nodes.iter().all(|n| {
            let st = Mariadb::sql(
                n,
                "SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                 WHERE VARIABLE_NAME IN ('WSREP_LOCAL_STATE_COMMENT', 'WSREP_CLUSTER_SIZE') ORDER BY 1",
            );
            st == format!(
                "wsrep_cluster_size\t{}\nwsrep_local_state_comment\tSynced\n",
                nodes.len()
            )
        });
        if ok {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "Galera never got Synced"
        );
        std::thread::sleep(Duration::from_millis(200));
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

/// A MariaDB image (no registry can be reached here): a skeleton root filesystem, its `/etc` a
/// copy of this machine's accounts and MariaDB configuration, to run with this machine's
/// `/usr` mounted read-only (`-v /usr:/usr:ro`; merged-usr, so `/bin` and `/lib` follow). Its
/// command, `/coffer-run-mariadbd`, runs the server in the foreground with its arguments, and
/// bootstraps a new Galera cluster once when the datadir holds a `coffer-bootstrap` file.
pub const IMAGE: &str = "localhost/coffer-mariadb:latest";

const RUN: &str = "#!/bin/sh
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if [ -e /var/lib/mysql/coffer-bootstrap ]; then
    rm -f /var/lib/mysql/coffer-bootstrap
    set -- \"$@\" --wsrep-new-cluster
fi
exec mariadbd --user=mysql \"$@\"
";

/// Write [`IMAGE`]'s root filesystem into `dir`.
pub fn image_root(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("coffer-run-mariadbd"), RUN).unwrap();
    super::sh(&format!(
        "set -e; cd {}
         for d in usr etc var/lib/mysql var/log/mysql var/tmp run/mysqld proc sys dev; do
             mkdir -p $d; done
         mkdir -m 1777 -p tmp
         for l in bin sbin lib lib64; do ln -sfn usr/$l $l; done
         cp /etc/passwd /etc/group /etc/nsswitch.conf /etc/ld.so.cache etc/
         cp -rL /etc/mysql etc/
         chown mysql:mysql run/mysqld var/lib/mysql var/log/mysql
         chmod 755 coffer-run-mariadbd",
        dir.display()
    ));
}

/// Build [`IMAGE`] in `node`'s podman (an isolated node has its own).
pub fn container_image(node: &Node) {
    image_root(&node.own("/srv/db").join("image"));
    check(
        node.sh(&format!(
            "tar -C /srv/db/image -c . | podman import -q - {IMAGE} >/dev/null"
        )),
        &format!("building {IMAGE} on {}", node.name),
    );
}
