//! A real Keystone v3 (Debian's `python3-keystone`: SQLite, Fernet tokens, its own WSGI
//! server) on a free loopback port, with a short token lifetime, and the Swift object-store
//! endpoint in its catalog. Stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin user's password (the bootstrap's; given to keystone-manage in its environment).
pub const ADMIN_PASSWORD: &str = "k3ystone-admin";

/// A running Keystone.
pub struct Keystone {
    child: Child,
    /// `http://127.0.0.1:PORT/v3`.
    pub url: String,
    dir: PathBuf,
}

fn check(out: std::process::Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Keystone {
    /// Set Keystone up in `dir` (tokens valid `token_secs` seconds) and start it.
    pub fn start(dir: &Path, token_secs: u32) -> Self {
        std::fs::create_dir_all(dir.join("fernet")).unwrap();
        std::fs::create_dir_all(dir.join("credential")).unwrap();
        let port = super::free_port();
        let url = format!("http://127.0.0.1:{port}/v3");
        let conf = dir.join("keystone.conf");
        std::fs::write(
            &conf,
            format!(
                "[DEFAULT]\nlog_file = {d}/keystone.log\n[database]\n\
                 connection = sqlite:///{d}/keystone.db\n[token]\nexpiration = {token_secs}\n\
                 [fernet_tokens]\nkey_repository = {d}/fernet\n\
                 [credential]\nkey_repository = {d}/credential\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let manage = |args: &[&str]| {
            check(
                Command::new("keystone-manage")
                    .arg("--config-file")
                    .arg(&conf)
                    .args(args)
                    .env("OS_BOOTSTRAP_PASSWORD", ADMIN_PASSWORD)
                    .current_dir(dir)
                    .output()
                    .expect("keystone-manage (python3-keystone) is installed"),
                &format!("keystone-manage {args:?}"),
            )
        };
        manage(&["db_sync"]);
        for setup in ["fernet_setup", "credential_setup"] {
            manage(&[setup, "--keystone-user", "root", "--keystone-group", "root"]);
        }
        manage(&[
            "bootstrap",
            "--bootstrap-public-url",
            &url,
            "--bootstrap-region-id",
            "RegionOne",
        ]);
        let child = Command::new("keystone-wsgi-public")
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--"])
            .arg("--config-file")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed().as_secs() < 60, "Keystone never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            url,
            dir: dir.to_path_buf(),
        }
    }

    /// The environment an `openrc` of the admin user sets.
    pub fn admin_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OS_AUTH_URL", self.url.clone()),
            ("OS_USERNAME", "admin".into()),
            ("OS_PASSWORD", ADMIN_PASSWORD.into()),
            ("OS_PROJECT_NAME", "admin".into()),
            ("OS_USER_DOMAIN_NAME", "Default".into()),
            ("OS_PROJECT_DOMAIN_NAME", "Default".into()),
            ("OS_REGION_NAME", "RegionOne".into()),
        ]
    }

    /// A token of the admin user and the answer's body (curl; the password in a file, not on
    /// argv).
    fn admin_auth(&self) -> (String, serde_json::Value) {
        let body = self.dir.join("auth.json");
        std::fs::write(
            &body,
            format!(
                r#"{{"auth":{{"identity":{{"methods":["password"],"password":{{"user":{{
                "name":"admin","domain":{{"name":"Default"}},"password":"{ADMIN_PASSWORD}"}}}}}},
                "scope":{{"project":{{"name":"admin","domain":{{"name":"Default"}}}}}}}}}}"#
            ),
        )
        .unwrap();
        let headers = self.dir.join("headers");
        let answer = check(
            Command::new("curl")
                .args(["-sS", "-f", "-D"])
                .arg(&headers)
                .args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(format!("@{}", body.display()))
                .arg(format!("{}/auth/tokens", self.url))
                .output()
                .unwrap(),
            "a Keystone token",
        );
        let token = std::fs::read_to_string(&headers)
            .unwrap()
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("X-Subject-Token")
                    .then(|| v.trim().to_string())
            })
            .unwrap();
        (token, serde_json::from_str(&answer).unwrap())
    }

    fn admin_token(&self) -> String {
        self.admin_auth().0
    }

    /// A token of the admin user and its project's Swift storage URL, from the catalog.
    pub fn swift_access(&self) -> (String, String) {
        let (token, body) = self.admin_auth();
        let url = body["token"]["catalog"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["type"] == "object-store")
            .and_then(|s| {
                s["endpoints"]
                    .as_array()?
                    .iter()
                    .find(|e| e["interface"] == "public")
            })
            .and_then(|e| e["url"].as_str())
            .expect("an object-store endpoint in the catalog")
            .to_string();
        (token, url)
    }

    /// POST `body` to `path` as the admin; the answer.
    fn post(&self, path: &str, body: &str) -> serde_json::Value {
        let out = check(
            Command::new("curl")
                .args(["-sS", "-f", "-H", "Content-Type: application/json"])
                .arg("-H")
                .arg(format!("X-Auth-Token: {}", self.admin_token()))
                .args(["--data-binary", body])
                .arg(format!("{}{path}", self.url))
                .output()
                .unwrap(),
            path,
        );
        serde_json::from_str(&out).unwrap()
    }

    /// Put Swift's object-store endpoint (the proxy at `proxy`) in the catalog.
    pub fn add_swift(&self, proxy: &str) {
        let service = self.post(
            "/services",
            r#"{"service":{"type":"object-store","name":"swift"}}"#,
        );
        let id = service["service"]["id"].as_str().unwrap();
        self.post(
            "/endpoints",
            &format!(
                r#"{{"endpoint":{{"interface":"public","region_id":"RegionOne",
                "url":"{proxy}/v1/AUTH_$(project_id)s","service_id":"{id}"}}}}"#
            ),
        );
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
