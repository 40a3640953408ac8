//! A multi-node test deployment: each node a real `sshd` on its own loopback address, in its own
//! mount namespace, so that the same path (`/srv/node`) holds different data on every node, as on
//! real controllers. Started and torn down by the tests themselves, as root, without systemd.
//! [`Cluster::start_isolated`] also gives each node its own network and PID namespace (and its
//! own `/run` and `/dev/shm`), on a private bridge: what a corosync/pacemaker cluster needs; and
//! its own podman (`/var/lib/containers`, `/etc/containers`).

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
    "/etc/rabbitmq",
    "/var/lib/rabbitmq",
    "/var/log/rabbitmq",
];
/// Where each node's sshd reads its authorized_keys (a per-node directory mounted there);
/// it also reads each login user's own `~/.ssh/authorized_keys`.
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
    /// The process that holds the node's namespaces (sshd itself, or `unshare` above it).
    sshd: Child,
    /// The listening sshd's pid, as this machine's PID namespace sees it.
    pid: u32,
}

impl Node {
    /// Pid of the node's listening sshd (its sessions are its children).
    pub fn sshd_pid(&self) -> u32 {
        self.pid
    }

    /// Run `script` with `sh -c` inside the node's namespaces (as the node sees its files,
    /// network and processes), e.g. to start a service there.
    pub fn sh(&self, script: &str) -> std::process::Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.pid.to_string(),
                "-m",
                "-n",
                "-p",
                "sh",
                "-c",
                script,
            ])
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
        PathBuf::from(format!("/proc/{}/root{path}", self.pid))
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
    /// The private network of isolated nodes; removed after the nodes are gone.
    network: Option<Network>,
}

/// A bridge on this machine and one network namespace per node, each with a veth on the bridge.
struct Network {
    bridge: String,
    namespaces: Vec<String>,
}

impl Network {
    /// A fresh /24 (unique within this process and, by pid, among test binaries) and a bridge.
    fn new() -> (Self, String) {
        static NETWORKS: AtomicU32 = AtomicU32::new(0);
        let n = NETWORKS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let prefix = format!("10.{}.{}", 200 + pid % 50, n % 250);
        let bridge = format!("cbr{}x{n}", pid % 100_000);
        sh(&format!(
            "ip link add {bridge} type bridge && ip link set {bridge} up && \
             ip addr add {prefix}.254/24 dev {bridge}"
        ));
        (
            Self {
                bridge,
                namespaces: Vec::new(),
            },
            prefix,
        )
    }

    /// A namespace for node `i` with `address` on its `eth0`.
    fn namespace(&mut self, i: usize, address: &str) -> String {
        let ns = format!("{}n{i}", self.bridge);
        let veth = format!("{}v{i}", self.bridge);
        sh(&format!(
            "ip netns add {ns} && ip link add {veth} type veth peer name eth0 netns {ns} && \
             ip link set {veth} master {} up && ip -n {ns} addr add {address}/24 dev eth0 && \
             ip -n {ns} link set eth0 up && ip -n {ns} link set lo up",
            self.bridge
        ));
        self.namespaces.push(ns.clone());
        ns
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
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
        Self::start_with(dir, names, false)
    }

    /// Start nodes that each also have their own network namespace (on a private bridge, the
    /// address on `eth0`), PID namespace, `/run` and `/dev/shm`: everything a node's processes
    /// run ends with it.
    pub fn start_isolated(dir: &Path, names: &[&str]) -> Self {
        Self::start_with(dir, names, true)
    }

    fn start_with(dir: &Path, names: &[&str], isolated: bool) -> Self {
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
        let mut network = isolated.then(Network::new);
        for (i, name) in names.iter().enumerate() {
            let place = network.as_mut().map(|(net, prefix)| {
                let address = format!("{prefix}.{}", i + 1);
                (net.namespace(i, &address), address)
            });
            let node = start_node(dir, name, &authorized, place);
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
            network: network.map(|(net, _)| net),
        }
    }

    /// Let users other than root log in with the client key (see [`login_user`]): the test
    /// sshd reads one authorized_keys file for every user, so it must be readable by them.
    pub fn allow_other_logins(&self) {
        sh(&format!(
            "chmod 0644 {}",
            self.key.with_file_name("authorized_keys").display()
        ));
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

/// A login user on this machine (so on every test node), with password-less sudo when `sudo`.
pub fn login_user(name: &str, sudo: bool) {
    // `*`: no password, yet not locked (sshd refuses a locked account even with a key).
    sh(&format!(
        "id -u {name} >/dev/null 2>&1 || useradd -m -s /bin/sh {name}; usermod -p '*' {name}"
    ));
    let rule = Path::new("/etc/sudoers.d").join(name);
    if sudo {
        std::fs::write(&rule, format!("{name} ALL=(root) NOPASSWD: ALL\n")).unwrap();
        sh(&format!("chmod 0440 {}", rule.display()));
    } else {
        let _ = std::fs::remove_file(&rule);
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

/// Shell commands that mount this machine's cgroup hierarchies (`/sys/fs/cgroup` and below,
/// as `/proc/self/mountinfo` lists them) again, in a mount namespace that lost them.
fn cgroup_mounts() -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut commands = Vec::new();
    for line in mountinfo.lines() {
        let (mount, fs) = line.split_once(" - ").unwrap_or((line, ""));
        let point = mount.split(' ').nth(4).unwrap_or("");
        if point != "/sys/fs/cgroup" && !point.starts_with("/sys/fs/cgroup/") {
            continue;
        }
        let mut fs = fs.split(' ');
        let (kind, options) = (fs.next().unwrap_or(""), fs.nth(1).unwrap_or(""));
        let mut options: Vec<&str> = options.split(',').filter(|o| *o != "rw").collect();
        // A named hierarchy without controllers (`name=systemd`) is mounted with `none`.
        if kind == "cgroup" && options.iter().all(|o| o.starts_with("name=")) {
            options.insert(0, "none");
        }
        let options = if options.is_empty() {
            String::new()
        } else {
            format!("-o {} ", options.join(","))
        };
        commands.push(format!(
            "mkdir -p {point} && mount -t {kind} {options}{kind} {point}"
        ));
    }
    if commands.is_empty() {
        "true".into()
    } else {
        commands.join(" && ")
    }
}

/// Start one node; `place` is (network namespace, address) for an isolated node.
fn start_node(dir: &Path, name: &str, authorized: &Path, place: Option<(String, String)>) -> Node {
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
    let (netns, address) = match place {
        Some((ns, address)) => (Some(ns), address),
        None => (None, fresh_address()),
    };
    let config = home.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress {address}:{SSH_PORT}\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {} .ssh/authorized_keys\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nPrintMotd no\nSubsystem sftp internal-sftp\n",
            host_key.display(),
            home.join("sshd.pid").display(),
            AUTHORIZED_KEYS
        ),
    )
    .unwrap();
    let mut mounts: Vec<String> = Vec::new();
    if netns.is_some() {
        // The node's own /run (sshd's privilege separation directory, pacemaker's and the
        // resource agents' state) and /dev/shm (libqb's IPC buffers).
        mounts.push(
            "mount -t tmpfs -o mode=755 tmpfs /run && \
             mkdir -p /run/sshd /run/mysqld /run/coffer-test-ssh /run/lock /run/crm \
             /run/resource-agents && chmod 1777 /run/lock && \
             chown hacluster:haclient /run/crm && chmod 750 /run/crm && \
             mount -t tmpfs -o mode=1777 tmpfs /dev/shm"
                .into(),
        );
        // `ip netns exec` mounted a new /sys, without this machine's cgroup hierarchies: mount
        // them again (the same hierarchies), for the node's container runtime.
        mounts.push(cgroup_mounts());
        // Its own podman: images, containers and settings (runc and cgroupfs, as this VM
        // needs; see FIELD-NOTES), so that each node sees only the containers it runs.
        let (storage, settings) = (own("/var/lib/containers"), own("/etc/containers"));
        std::fs::create_dir_all(&storage).unwrap();
        std::fs::create_dir_all(&settings).unwrap();
        let _ = Command::new("cp")
            .args(["-a", "/etc/containers/.", settings.to_str().unwrap()])
            .status();
        std::fs::write(
            settings.join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\n",
        )
        .unwrap();
        mounts.push(format!(
            "mkdir -p /var/lib/containers /etc/containers && \
             mount --bind {} /var/lib/containers && mount --bind {} /etc/containers",
            storage.display(),
            settings.display()
        ));
    }
    mounts.extend(
        NODE_PATHS
            .iter()
            .map(|p| format!("mount --bind {} {p}", own(p).display())),
    );
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
    let mut command = match &netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "unshare", "-p", "-f", "--kill-child"])
                .args(["--mount-proc"]);
            c
        }
        None => Command::new("unshare"),
    };
    let sshd = command
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
    // With its own PID namespace, sshd is `unshare`'s child (pid 1 inside).
    let pid = if netns.is_some() {
        let children = format!("/proc/{0}/task/{0}/children", sshd.id());
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        text.split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no sshd under unshare ({children})"))
    } else {
        sshd.id()
    };
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
        pid,
    }
}
