//! Galera as TripleO runs it on the overcloud controllers: every member in a podman container
//! that a real Pacemaker bundle started and named (`galera-bundle-podman-N`, N the replica
//! Pacemaker placed on that node, so not necessarily the node's own number), its datadir a bind
//! mount of the node's own directory, host networking, on three isolated nodes
//! ([`Cluster::start_isolated`](super::nodes::Cluster)) that form one corosync/pacemaker cluster.
//!
//! Real: corosync and Pacemaker 2.1 (three members), the bundle and the podman resource agent
//! that runs its containers, podman with runc, MariaDB 10.11 and Galera 4 from Debian. Not as
//! in TripleO: the containers run `mariadbd` themselves, where TripleO's run
//! `pacemaker_remoted` and the galera resource agent starts `mariadbd` through it
//! (pacemaker-remote is not installed here); and the image is
//! [`container_image`](super::mariadb::container_image)'s skeleton, whose `/usr` the bundle
//! maps read-only from the node.

use super::mariadb::{IMAGE, check, container_image};
use super::nodes::Node;
use super::pacemaker::Pacemaker;

/// The datadir on the node (bind-mounted at `/var/lib/mysql` in the container).
pub const NODE_DATADIR: &str = "/srv/db/mysql";
/// A file in the datadir that makes the container's server bootstrap a new cluster, once.
const BOOTSTRAP_ONCE: &str = "coffer-bootstrap";

/// A running three-member Galera cluster in a Pacemaker bundle; Pacemaker (and with it the
/// containers) stopped when dropped.
pub struct GaleraBundle<'n> {
    /// The Pacemaker cluster that runs the bundle.
    pub pacemaker: Pacemaker<'n>,
    nodes: Vec<&'n Node>,
}

impl<'n> GaleraBundle<'n> {
    /// Configure every node (image, datadir, Galera configuration), start Pacemaker on all and
    /// create the bundle: one replica first, which bootstraps the cluster, then three.
    pub fn start(nodes: &'n [Node]) -> Self {
        let members: Vec<String> = nodes.iter().map(|n| n.address.clone()).collect();
        for node in nodes {
            container_image(node);
            std::fs::write(
                node.own("/srv/db").join("galera.cnf"),
                format!(
                    "[mysqld]\nbind-address={a}\nskip-name-resolve\ninnodb_buffer_pool_size=64M\n\
                     binlog_format=ROW\ndefault_storage_engine=InnoDB\ninnodb_autoinc_lock_mode=2\n\
                     wsrep_on=ON\nwsrep_provider=/usr/lib/galera/libgalera_smm.so\n\
                     wsrep_cluster_name=coffer-bundle\nwsrep_cluster_address=gcomm://{}\n\
                     wsrep_node_address={a}\nwsrep_node_name={}\nwsrep_sst_method=rsync\n",
                    members.join(","),
                    node.name,
                    a = node.address
                ),
            )
            .unwrap();
            check(
                node.sh(&format!(
                    "set -e; mkdir -p {NODE_DATADIR}
                     chown mysql:mysql {NODE_DATADIR}
                     mariadb-install-db --user=mysql --datadir={NODE_DATADIR} --skip-test-db \
                       >/srv/db/install.log 2>&1 || {{ cat /srv/db/install.log; exit 1; }}
                     touch {NODE_DATADIR}/{BOOTSTRAP_ONCE}"
                )),
                &format!("preparing {}", node.name),
            );
        }
        let pacemaker = Pacemaker::start_cluster(nodes);
        pacemaker.sh(&format!(
            "pcs resource bundle create galera-bundle container podman image={IMAGE} \
             replicas=1 network=host run-command=/coffer-run-mariadbd \
             storage-map id=galera-usr source-dir=/usr target-dir=/usr options=ro \
             storage-map id=galera-data source-dir={NODE_DATADIR} target-dir=/var/lib/mysql \
             options=rw \
             storage-map id=galera-cnf source-dir=/srv/db/galera.cnf \
             target-dir=/etc/mysql/mariadb.conf.d/99-galera.cnf options=ro"
        ));
        let bundle = Self {
            pacemaker,
            nodes: nodes.iter().collect(),
        };
        // The first replica bootstraps wherever Pacemaker placed it; the others join it.
        let first = bundle.wait_synced(1);
        for (i, node) in nodes.iter().enumerate() {
            if i != first {
                check(
                    node.sh(&format!("rm -f {NODE_DATADIR}/{BOOTSTRAP_ONCE}")),
                    "removing the marker",
                );
            }
        }
        bundle
            .pacemaker
            .sh("pcs resource bundle update galera-bundle container replicas=3");
        bundle.wait_synced(3);
        bundle
    }

    /// The name of the bundle's container on node `i` (empty when none runs there).
    pub fn container(&self, i: usize) -> String {
        check(
            self.nodes[i].sh("podman ps --format '{{.Names}}' --filter name=galera-bundle"),
            "podman ps",
        )
        .trim()
        .to_string()
    }

    /// `mariadb -N -B -e SQL` as root in the container on node `i`.
    fn mariadb(&self, i: usize, sql: &str) -> std::process::Output {
        std::process::Command::new("nsenter")
            .args([
                "-t",
                &self.nodes[i].sshd_pid().to_string(),
                "-m",
                "-n",
                "-p",
            ])
            .args([
                "podman",
                "exec",
                &self.container(i),
                "mariadb",
                "-N",
                "-B",
                "-e",
                sql,
            ])
            .output()
            .unwrap()
    }

    /// Run SQL as root in the container on node `i`; the tab-separated rows.
    pub fn sql(&self, i: usize, sql: &str) -> String {
        check(
            self.mariadb(i, sql),
            &format!("SQL on {}: {sql}", self.nodes[i].name),
        )
    }

    /// Whether node `i`'s member is Synced in a cluster of `size`.
    fn synced(&self, i: usize, size: usize) -> bool {
        if self.container(i).is_empty() {
            return false;
        }
        let out = self.mariadb(
            i,
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE \
             VARIABLE_NAME IN ('WSREP_LOCAL_STATE_COMMENT', 'WSREP_CLUSTER_SIZE') ORDER BY \
             VARIABLE_NAME",
        );
        String::from_utf8_lossy(&out.stdout) == format!("{size}\nSynced\n")
    }

    /// Wait (up to three minutes) until `size` members are Synced in one cluster of `size`;
    /// the index of the first such node.
    pub fn wait_synced(&self, size: usize) -> usize {
        let started = std::time::Instant::now();
        loop {
            let synced: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.synced(i, size))
                .collect();
            if synced.len() == size {
                return synced[0];
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(180),
                "the bundle's Galera never had {size} Synced members: {}\n{}",
                self.pacemaker.sh("crm_mon -1"),
                (0..self.nodes.len())
                    .map(|i| String::from_utf8_lossy(
                        &self.nodes[i]
                            .sh("podman ps -a; podman logs --tail 20 $(podman ps -aq) 2>&1")
                            .stdout
                    )
                    .into_owned())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}
