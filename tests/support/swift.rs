//! A real all-in-one Swift on a test node (Debian's swift packages: account, container, object
//! and proxy servers, one replica, tempauth, Swift's own S3 API `s3api`, memcached), listening
//! on the node's address, with the node's own `/etc/swift` (configs, rings) and
//! `/srv/node/d1`; the servers are started
//! through the `systemctl` stand-in (`swift-proxy`, `swift-account`, …).

use super::nodes::Node;

/// The tempauth account and key.
pub const USER: &str = "test:tester";
/// Its key.
pub const KEY: &str = "t3sting-key";
/// A second tempauth account, for repositories in this Swift (a key no other test uses, so a
/// test can watch every process's argv for it while others run).
pub const REPO_USER: &str = "repo:coffer";
/// Its key.
pub const REPO_KEY: &str = "r3po-s3cret";
/// The server units.
pub const SERVICES: [&str; 4] = [
    "swift-account",
    "swift-container",
    "swift-object",
    "swift-proxy",
];

/// One Swift at a time in a test binary: the `systemctl` stand-in finds Swift's servers by
/// their command line, which is the same on every node.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A running Swift; stopped when dropped.
pub struct Swift<'n> {
    node: &'n Node,
    /// The proxy's URL.
    pub proxy: String,
    _alone: std::sync::MutexGuard<'static, ()>,
}

fn check(out: std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl<'n> Swift<'n> {
    /// Configure Swift and its rings on `node`, start memcached and the four servers.
    pub fn start(node: &'n Node) -> Self {
        let alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        super::systemctl::install(node);
        let etc = node.own("/etc/swift");
        let a = &node.address;
        std::fs::write(
            etc.join("swift.conf"),
            "[swift-hash]\nswift_hash_path_suffix = coffertest\nswift_hash_path_prefix = coffertest\n\
             [storage-policy:0]\nname = Policy-0\ndefault = yes\n",
        )
        .unwrap();
        for (name, port) in [("account", 6202), ("container", 6201), ("object", 6200)] {
            std::fs::write(
                etc.join(format!("{name}-server.conf")),
                format!(
                    "[DEFAULT]\nbind_ip = {a}\nbind_port = {port}\ndevices = /srv/node\n\
                     mount_check = false\nworkers = 1\nswift_dir = /etc/swift\nuser = swift\n\
                     log_name = {name}\n[pipeline:main]\npipeline = {name}-server\n\
                     [app:{name}-server]\nuse = egg:swift#{name}\n"
                ),
            )
            .unwrap();
        }
        std::fs::write(
            etc.join("proxy-server.conf"),
            format!(
                "[DEFAULT]\nbind_ip = {a}\nbind_port = 8080\nworkers = 1\nswift_dir = /etc/swift\n\
                 user = swift\n[pipeline:main]\npipeline = catch_errors cache s3api tempauth proxy-server\n\
                 [app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\
                 [filter:s3api]\nuse = egg:swift#s3api\n\
                 [filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = {KEY} .admin\n\
                 user_repo_coffer = {REPO_KEY} .admin\n\
                 [filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = {a}:11211\n\
                 [filter:catch_errors]\nuse = egg:swift#catch_errors\n"
            ),
        )
        .unwrap();
        let mut script = String::from("set -e; cd /etc/swift; mkdir -p /srv/node/d1; ");
        for (name, port) in [("account", 6202), ("container", 6201), ("object", 6200)] {
            script.push_str(&format!(
                "swift-ring-builder {name}.builder create 4 1 1 >/dev/null; \
                 swift-ring-builder {name}.builder add r1z1-{a}:{port}/d1 100 >/dev/null; \
                 swift-ring-builder {name}.builder rebalance >/dev/null; "
            ));
        }
        script.push_str(&format!(
            "chown -R swift:swift /srv/node /etc/swift /var/cache/swift; \
             memcached -u memcache -l {a} -p 11211 -d; "
        ));
        for s in SERVICES {
            script.push_str(&format!("/usr/local/sbin/systemctl start {s}; "));
        }
        check(node.sh(&script), "starting Swift");
        Self {
            node,
            proxy: format!("http://{a}:8080"),
            _alone: alone,
        }
    }

    /// A token and the storage URL, from tempauth.
    pub fn auth(&self) -> (String, String) {
        self.auth_as(USER, KEY)
    }

    /// A token and the storage URL of `user`, from tempauth.
    pub fn auth_as(&self, user: &str, key: &str) -> (String, String) {
        let headers = check(
            std::process::Command::new("curl")
                .args(["-sS", "-D", "-", "-o", "/dev/null"])
                // The proxy may still be binding its port when its start returns.
                .args(["--retry", "60", "--retry-delay", "1", "--retry-connrefused"])
                .arg("-H")
                .arg(format!("X-Auth-User: {user}"))
                .arg("-H")
                .arg(format!("X-Auth-Key: {key}"))
                .arg(format!("{}/auth/v1.0", self.proxy))
                .output()
                .unwrap(),
            "tempauth",
        );
        let header = |name: &str| {
            headers
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
                .unwrap()
        };
        (header("X-Auth-Token"), header("X-Storage-Url"))
    }

    /// Authenticate with Keystone at `keystone` (`…/v3`) instead of tempauth
    /// (keystonemiddleware's `authtoken` and Swift's `keystoneauth`, the admin user as the
    /// proxy's service user), and restart the proxy.
    pub fn use_keystone(&self, keystone: &str) {
        let a = &self.node.address;
        let password = super::keystone::ADMIN_PASSWORD;
        std::fs::write(
            self.node.own("/etc/swift").join("proxy-server.conf"),
            format!(
                "[DEFAULT]\nbind_ip = {a}\nbind_port = 8080\nworkers = 1\nswift_dir = /etc/swift\n\
                 user = swift\n[pipeline:main]\n\
                 pipeline = catch_errors cache authtoken keystoneauth proxy-server\n\
                 [app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\
                 [filter:authtoken]\n\
                 paste.filter_factory = keystonemiddleware.auth_token:filter_factory\n\
                 www_authenticate_uri = {keystone}\nauth_url = {keystone}\nauth_type = password\n\
                 project_domain_name = Default\nuser_domain_name = Default\n\
                 project_name = admin\nusername = admin\npassword = {password}\n\
                 delay_auth_decision = True\ninterface = public\n\
                 [filter:keystoneauth]\nuse = egg:swift#keystoneauth\n\
                 operator_roles = admin, member\n\
                 [filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = {a}:11211\n\
                 [filter:catch_errors]\nuse = egg:swift#catch_errors\n"
            ),
        )
        .unwrap();
        check(
            self.node
                .sh("/usr/local/sbin/systemctl restart swift-proxy"),
            "restarting the Swift proxy",
        );
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect((a.as_str(), 8080)).is_err() {
            assert!(started.elapsed().as_secs() < 30, "the proxy never listened");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The end of the proxy's log, for a failing assertion's message.
    pub fn proxy_log(&self) -> String {
        let log =
            String::from_utf8_lossy(&self.node.sh("tail -n 40 /var/cache/swift/proxy.log").stdout)
                .into_owned();
        format!("proxy log:\n{log}")
    }

    /// Stop every server (memcached stays).
    pub fn stop(&self) {
        for s in SERVICES {
            check(
                self.node.sh(&format!("/usr/local/sbin/systemctl stop {s}")),
                s,
            );
        }
    }
}

impl Drop for Swift<'_> {
    fn drop(&mut self) {
        let _ = self.node.sh(&format!(
            "for s in {}; do /usr/local/sbin/systemctl stop $s; done; pkill -f 'memcached -u memcache -l {}'",
            SERVICES.join(" "),
            self.node.address
        ));
    }
}
