//! A multi-node test deployment: each node a real `sshd` on its own loopback address, in its own
//! mount namespace, so that the same path (`/srv/node`) holds different data on every node, as on
//! real controllers. Started and torn down by the tests themselves, as root, without systemd.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::sh;

/// The port every test sshd listens on (each node has its own address).
pub const SSH_PORT: u16 = 2222;
/// Paths each node has its own copy of (bind-mounted in its mount namespace).
/// `/srv/db` holds a test MariaDB's datadir and config; `/usr/local/sbin` the node's
/// `systemctl` stand-in (see `mariadb.rs`).
pub const NODE_PATHS: &[&str] = &[
    "/srv/node",
    "/srv/db",
    "/run/mysqld",
    "/usr/local/sbin",
    "/var/lib/redis",
    "/etc/corosync",
    "/var/lib/corosync",
    "/var/lib/pacemaker",
    "/tmp",
    "/etc/swift",
    "/var/cache/swift",
];
/// Where each node's sshd reads its authorized_keys (a per-node directory mounted there).
pub const AUTHORIZED_KEYS: &str = "/run/coffer-test-ssh/authorized_keys";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh loopback address, unique within this test process and unlikely to clash with
/// another test binary running at the same time.
pub fn fresh_address() -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!(
        "127.{}.{}.{}",
        100 + pid % 100,
        (pid / 100) % 250 + 1,
        n + 10
    )
}

/// One test node.
pub struct Node {
    /// Its name in the deployment.
    pub name: String,
    /// Its loopback address.
    pub address: String,
    /// The host-side directory bind-mounted at `/srv/node` on the node.
    pub srv_node: PathBuf,
    /// The host-side file the node's sshd sees as [`AUTHORIZED_KEYS`].
    pub authorized_keys: PathBuf,
    /// The node's sshd log.
    pub sshd_log: PathBuf,
    home: PathBuf,
    /// Its host key's public half, as a known_hosts line.
    pub known_hosts_line: String,
    sshd: Child,
}

impl Node {
    /// Pid of the node's listening sshd (its sessions are its children).
    pub fn sshd_pid(&self) -> u32 {
        self.sshd.id()
    }

    /// Run `script` with `sh -c` inside the node's mount namespace (as the node sees its
    /// files), e.g. to start a service there.
    pub fn sh(&self, script: &str) -> std::process::Output {
        Command::new("nsenter")
            .args(["-t", &self.sshd.id().to_string(), "-m", "sh", "-c", script])
            .output()
            .expect("nsenter (util-linux)")
    }

    /// The host-side directory mounted at `path` (one of [`NODE_PATHS`]) on this node.
    pub fn own(&self, path: &str) -> PathBuf {
        assert!(NODE_PATHS.contains(&path), "{path} is not a per-node path");
        self.home
            .join(path.trim_start_matches('/').replace('/', "-"))
    }

    /// A path as the node sees it (through its sshd's mount namespace).
    pub fn path(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.sshd.id()))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// A set of test nodes sharing one client key and one known_hosts file.
pub struct Cluster {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The client's private key.
    pub key: PathBuf,
    /// A known_hosts file with every node's key.
    pub known_hosts: PathBuf,
}

fn keygen(path: &Path) {
    sh(&format!(
        "ssh-keygen -q -t ed25519 -N '' -C coffer-test -f {}",
        path.display()
    ));
}

impl Cluster {
    /// Start `names.len()` nodes under `dir`.
    pub fn start(dir: &Path, names: &[&str]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        for p in NODE_PATHS {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::create_dir_all(Path::new(AUTHORIZED_KEYS).parent().unwrap()).unwrap();
        let key = dir.join("client_key");
        keygen(&key);
        let authorized = dir.join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized).unwrap();
        let mut nodes = Vec::new();
        let mut known = String::new();
        for name in names {
            let node = start_node(dir, name, &authorized);
            known.push_str(&node.known_hosts_line);
            known.push('\n');
            nodes.push(node);
        }
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, known).unwrap();
        Self {
            nodes,
            key,
            known_hosts,
        }
    }

    /// `[[node]]` sections for the deployment file, each with `roles`.
    pub fn deployment_nodes(&self, roles: &[&str]) -> String {
        self.deployment_nodes_by(|_| roles.to_vec())
    }

    /// `[[node]]` sections for the deployment file, each with the roles `roles_of(name)`.
    pub fn deployment_nodes_by<'a>(&self, roles_of: impl Fn(&str) -> Vec<&'a str>) -> String {
        let mut text = format!(
            "[ssh]\nknown-hosts = {:?}\n\n",
            self.known_hosts.display().to_string()
        );
        for n in &self.nodes {
            let roles: Vec<String> = roles_of(&n.name).iter().map(|r| format!("{r:?}")).collect();
            text.push_str(&format!(
                "[[node]]\nname = {:?}\naddress = {:?}\nport = {SSH_PORT}\nuser = \"root\"\nkey = {:?}\nroles = [{}]\n\n",
                n.name,
                n.address,
                self.key.display().to_string(),
                roles.join(", ")
            ));
        }
        text
    }
}

/// Roles for a cluster whose `backup-host` node keeps the repository: a role of its own, so no
/// plugin backs it up; every other node is a controller.
pub fn controllers_and_backup_host(name: &str) -> Vec<&'static str> {
    if name == "backup-host" {
        vec!["backup"]
    } else {
        vec!["controller"]
    }
}

fn start_node(dir: &Path, name: &str, authorized: &Path) -> Node {
    let home = dir.join(name);
    let own = |p: &str| home.join(p.trim_start_matches('/').replace('/', "-"));
    for p in NODE_PATHS {
        std::fs::create_dir_all(own(p)).unwrap();
    }
    // Servers clean stale files in /tmp when they start (mariadbd does): each node its own.
    std::fs::set_permissions(
        own("/tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    // Keep the node's `/usr/local/sbin` as it was, plus whatever a test adds.
    let _ = std::process::Command::new("cp")
        .args([
            "-a",
            "/usr/local/sbin/.",
            own("/usr/local/sbin").to_str().unwrap(),
        ])
        .status();
    let srv_node = own("/srv/node");
    let ssh_auth = home.join("ssh-auth");
    std::fs::create_dir_all(&ssh_auth).unwrap();
    std::fs::copy(authorized, ssh_auth.join("authorized_keys")).unwrap();
    let host_key = home.join("ssh_host_ed25519_key");
    keygen(&host_key);
    let address = fresh_address();
    let config = home.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress {address}:{SSH_PORT}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nPrintMotd no\nSubsystem sftp internal-sftp\n",
            host_key.display(),
            home.join("sshd.pid").display(),
            AUTHORIZED_KEYS
        ),
    )
    .unwrap();
    let mut mounts: Vec<String> = NODE_PATHS
        .iter()
        .map(|p| format!("mount --bind {} {p}", own(p).display()))
        .collect();
    mounts.push(format!(
        "mount --bind {} {}",
        ssh_auth.display(),
        Path::new(AUTHORIZED_KEYS).parent().unwrap().display()
    ));
    let script = format!(
        "{} && exec /usr/sbin/sshd -D -e -f {} 2>>{}",
        mounts.join(" && "),
        config.display(),
        home.join("sshd.log").display()
    );
    let sshd = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare and sshd (openssh-server) are installed");
    let started = Instant::now();
    while TcpStream::connect((address.as_str(), SSH_PORT)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "sshd for {name} did not start: {}",
            std::fs::read_to_string(home.join("sshd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
    let mut parts = public.split_whitespace();
    let known_hosts_line = format!(
        "[{address}]:{SSH_PORT} {} {}",
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    Node {
        name: name.into(),
        address,
        srv_node,
        authorized_keys: ssh_auth.join("authorized_keys"),
        sshd_log: home.join("sshd.log"),
        home: home.clone(),
        known_hosts_line,
        sshd,
    }
}
