//! What the end-to-end tests share: a scratch deployment with its repository, a way to run the
//! real `coffer` binary against it, and a full record of a directory tree to compare.

#![allow(dead_code)]

pub mod docker;
pub mod galera_bundle;
pub mod keystone;
pub mod mariadb;
pub mod nodes;
pub mod pacemaker;
pub mod rabbitmq;
pub mod redis;
pub mod rgw;
pub mod swift;
pub mod systemctl;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// `out` of `coffer args…`, required to be a success (else the test fails with its output).
fn succeeded(out: Output, args: &[&str]) -> Output {
    assert!(
        out.status.success(),
        "coffer {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `coffer` binary under test.
pub const COFFER: &str = env!("CARGO_BIN_EXE_coffer");

/// A scratch deployment: a temporary directory holding the repository, the password file,
/// the deployment file and whatever the test backs up.
pub struct Scratch {
    /// The temporary directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// A new scratch directory with a password file.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("coffer-test-")
            .tempdir_in(scratch_root())
            .expect("temp dir");
        let password = dir.path().join("password");
        std::fs::write(&password, "correct horse battery staple\n").unwrap();
        std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self { dir }
    }

    /// A path inside the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The repository.
    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// Write a deployment file with one local node and `plugins` (TOML after the node).
    pub fn deployment(&self, plugins: &str) -> PathBuf {
        self.deployment_with_nodes(
            "[[node]]\nname = \"local\"\naddress = \"local\"\nroles = [\"undercloud\"]\n",
            plugins,
        )
    }

    /// Write a deployment file with these `nodes` sections and `plugins` (TOML).
    pub fn deployment_with_nodes(&self, nodes: &str, plugins: &str) -> PathBuf {
        let text = format!(
            "name = \"test\"\n\n[repository]\npath = \"{}\"\npassword-file = \"{}\"\n\n{nodes}\n{plugins}\n",
            self.repo().display(),
            self.path("password").display()
        );
        let p = self.path("deployment.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A deployment whose filesystem plugin backs up `paths`.
    pub fn filesystem(&self, paths: &[&Path]) -> PathBuf {
        let list: Vec<String> = paths
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        self.deployment(&format!(
            "[plugin.filesystem.settings]\npaths = [{}]\n",
            list.join(", ")
        ))
    }

    /// A `coffer` command set up for this scratch deployment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(COFFER);
        c.args(args)
            .env("COFFER_CONFIG", self.path("deployment.toml"))
            .env("COFFER_CACHE_DIR", scratch_root().join("component-cache"))
            .env("COFFER_PLUGIN_DIR", self.path("plugins"))
            .env("COFFER_STATE_DIR", self.path("state"))
            .env_remove("COFFER_PASSWORD")
            .env_remove("COFFER_PASSWORD_FILE")
            .env_remove("COFFER_REPOSITORY");
        c
    }

    /// Run `coffer args…` and return its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running coffer")
    }

    /// Run `coffer args…` and require success.
    pub fn ok(&self, args: &[&str]) -> Output {
        succeeded(self.run(args), args)
    }

    /// [`Scratch::ok`] with one more variable in coffer's environment (`DOCKER_HOST`,
    /// `CONTAINERS_CONF`: what the node's container runtime needs).
    pub fn ok_with(&self, args: &[&str], var: &str, value: impl AsRef<std::ffi::OsStr>) -> Output {
        succeeded(self.command(args).env(var, value).output().unwrap(), args)
    }

    /// Replace `from` (which must be there) by `to` in the deployment file.
    pub fn edit_deployment(&self, from: &str, to: &str) {
        let path = self.path("deployment.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(from),
            "no {from:?} in the deployment file:\n{text}"
        );
        std::fs::write(&path, text.replace(from, to)).unwrap();
    }

    /// `coffer init`.
    pub fn init(&self) {
        self.ok(&["init"]);
    }

    /// `coffer backup --json` and the new snapshot's id.
    pub fn backup(&self, extra: &[&str]) -> String {
        let mut args = vec!["backup", "--json"];
        args.extend_from_slice(extra);
        let out = self.ok(&args);
        summary(&out)["snapshot"]
            .as_str()
            .expect("snapshot id")
            .to_string()
    }

    /// Start `coffer backup` and return once it has written data to the repository (so a test
    /// can interrupt it mid-stream). Its stderr is piped.
    pub fn backup_in_flight(&self) -> std::process::Child {
        self.backup_in_flight_with(&[])
    }

    /// [`Scratch::backup_in_flight`] with extra arguments (`--json`: stdout is piped too).
    pub fn backup_in_flight_with(&self, extra: &[&str]) -> std::process::Child {
        let data = self.repo().join("data");
        let before = du(&data);
        let mut args = vec!["backup"];
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while du(&data) == before {
            assert!(started.elapsed().as_secs() < 120, "backup wrote nothing");
            assert!(
                child.try_wait().unwrap().is_none(),
                "backup finished before it could be interrupted"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child
    }

    /// Number of Coffer snapshots.
    pub fn snapshot_count(&self) -> usize {
        let out = self.ok(&["snapshots", "--json"]);
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    /// Number of files in the repository's `snapshots/` directory (restic-level snapshots).
    pub fn raw_snapshot_files(&self) -> usize {
        std::fs::read_dir(self.repo().join("snapshots"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Flip 16 bytes in the middle of the repository's largest pack file; returns its path.
    pub fn corrupt_largest_pack(&self) -> PathBuf {
        use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
        let mut packs = Vec::new();
        for d in std::fs::read_dir(self.repo().join("data")).unwrap() {
            for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
                let f = f.unwrap();
                packs.push((f.metadata().unwrap().len(), f.path()));
            }
        }
        packs.sort();
        let pack = packs.pop().expect("a pack").1;
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&pack)
            .unwrap();
        f.seek(SeekFrom::Start(1000)).unwrap();
        let mut b = [0u8; 16];
        f.read_exact(&mut b).unwrap();
        for x in &mut b {
            *x ^= 0xff;
        }
        f.seek(SeekFrom::Start(1000)).unwrap();
        f.write_all(&b).unwrap();
        pack
    }

    /// Copy a test fixture plugin into this deployment's plugin directory.
    pub fn install_fixture(&self, krate: &str) {
        let dir = self.path("plugins");
        std::fs::create_dir_all(&dir).unwrap();
        let file = format!("{}.wasm", krate.replace('-', "_"));
        std::fs::copy(
            Path::new(coffer_core::registry::BUILT_PLUGINS_DIR).join(&file),
            dir.join(&file),
        )
        .expect("fixture plugin built by crates/core/build.rs");
    }

    /// Install the hostile fixture a second time as plugin `twinned` (its name, of the same
    /// length, replaced in the component): two independent plugins with the same behaviour.
    pub fn install_hostile_twin(&self) {
        let built = Path::new(coffer_core::registry::BUILT_PLUGINS_DIR);
        let mut wasm = std::fs::read(built.join("coffer_plugin_hostile.wasm")).unwrap();
        let mut replaced = 0;
        while let Some(i) = wasm.windows(7).position(|w| w == b"hostile") {
            wasm[i..i + 7].copy_from_slice(b"twinned");
            replaced += 1;
        }
        assert!(replaced > 0);
        let dir = self.path("plugins");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("twinned.wasm"), wasm).unwrap();
    }
}

/// Assert that a run failed with exit `code` and that its stderr holds every one of `parts`
/// (plugin, node, step, cause …); returns stderr.
pub fn failed_with(out: &Output, code: i32, parts: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{err}");
    for part in parts {
        assert!(err.contains(part), "no {part:?} in: {err}");
    }
    err
}

/// Assert that only the owner can reach anything under `root`, as restic makes repositories:
/// every directory 0700, every file 0600.
pub fn assert_private(root: &Path) {
    let mut seen = 0;
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}, not {want:o}", p.display());
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        seen += 1;
    }
    assert!(seen > 260, "only {seen} entries under {}", root.display());
}

/// One field (`name`, `node`, `plugin`) of every artifact in a `--json` run's summary, sorted.
pub fn artifact_fields(out: &Output, field: &str) -> Vec<String> {
    let mut v: Vec<String> = summary(out)["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        // The filesystem plugin's xattr listing beside each archive is not counted here.
        .filter(|a| !a["name"].as_str().unwrap_or("").starts_with("xattrs:"))
        .map(|a| a[field].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Run `cmd` to completion while scanning every process's argv for `secret`; fail if it shows
/// up there or in the command's output. Returns the output.
pub fn run_watching_argv(mut cmd: Command, secret: &str) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let mut seen = 0;
    while child.try_wait().unwrap().is_none() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                seen += 1;
                let text = String::from_utf8_lossy(&cmdline);
                assert!(
                    !text.contains(secret),
                    "secret in argv of pid {:?}: {text}",
                    entry.file_name()
                );
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(secret),
            "secret in the output"
        );
    }
    assert!(seen > 0);
    out
}

/// Where scratch directories go: on the same disk as the build, never tmpfs (sparse files,
/// xattrs and ACLs need a real filesystem).
pub fn scratch_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// The JSON summary line of a `--json` run.
/// The grant block `coffer plugins describe PLUGIN` printed in `text`, as an operator pastes it
/// into a deployment file (its indentation removed).
pub fn grant_block(text: &str, plugin: &str) -> String {
    let head = format!("[plugin.{plugin}.grant]");
    text.lines()
        .skip_while(|l| l.trim() != head)
        .take_while(|l| !l.trim_start().starts_with("granted by"))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn summary(out: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .unwrap_or_else(|| {
            panic!(
                "no summary in output:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Everything about one entry of a tree that a restore must bring back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// `file`, `dir`, `symlink`, …
    pub kind: &'static str,
    /// Permission bits, setuid/setgid/sticky included.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Size.
    pub size: u64,
    /// SHA-256 of the content (files), or the link target (symlinks).
    pub content: String,
    /// Every extended attribute (user.*, and POSIX ACLs as system.posix_acl_*).
    pub xattrs: BTreeMap<OsString, Vec<u8>>,
    /// For hardlinks: the relative path of the first name of the same inode.
    pub link_group: Option<PathBuf>,
}

/// Record every entry under `root`, keyed by path relative to `root`.
pub fn record_tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let ft = m.file_type();
        let (kind, content) = if ft.is_symlink() {
            (
                "symlink",
                std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .escape_ascii()
                    .to_string(),
            )
        } else if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            ("dir", String::new())
        } else if ft.is_file() {
            ("file", hash_file(&p))
        } else {
            ("other", String::new())
        };
        let mut xattrs = BTreeMap::new();
        if !ft.is_symlink() {
            for name in xattr::list(&p).unwrap() {
                let v = xattr::get(&p, &name).unwrap().unwrap_or_default();
                xattrs.insert(name, v);
            }
        }
        let link_group = if ft.is_file() && m.nlink() > 1 {
            // Filled in below with the smallest name of the inode, whatever the walk order.
            let first = inodes.entry((m.dev(), m.ino())).or_insert(rel.clone());
            if rel < *first {
                *first = rel.clone();
            }
            Some(PathBuf::from(format!("{}:{}", m.dev(), m.ino())))
        } else {
            None
        };
        out.insert(
            rel,
            Entry {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec()),
                size: if ft.is_dir() { 0 } else { m.len() },
                content,
                xattrs,
                link_group,
            },
        );
    }
    for e in out.values_mut() {
        if let Some(key) = &e.link_group {
            let (dev, ino) = key.to_str().unwrap().split_once(':').unwrap();
            e.link_group = Some(inodes[&(dev.parse().unwrap(), ino.parse().unwrap())].clone());
        }
    }
    out
}

/// SHA-256 of a file's content.
pub fn hash_file(p: &Path) -> String {
    let mut f = std::fs::File::open(p).unwrap();
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).unwrap();
    hex_string(&h.finalize())
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Assert two tree records are equal, listing every difference.
pub fn assert_same_tree(before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>) {
    let mut diffs = Vec::new();
    for (p, e) in before {
        match after.get(p) {
            None => diffs.push(format!("missing: {p:?}")),
            Some(a) if a != e => {
                diffs.push(format!("differs: {p:?}\n  before {e:?}\n  after  {a:?}"))
            }
            _ => {}
        }
    }
    for p in after.keys().filter(|p| !before.contains_key(*p)) {
        diffs.push(format!("extra: {p:?}"));
    }
    assert!(
        diffs.is_empty(),
        "{} difference(s):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// A TCP port on 127.0.0.1 that nothing listens on (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Deterministic pseudo-random bytes (xorshift), so data does not compress away.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Run a shell command, requiring success.
pub fn sh(script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Total bytes of files under `p`.
pub fn du(p: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

/// A tmpfs mounted for a test and unmounted on drop. ext4 keeps at most one block of extended
/// attributes per inode, too little for a 4 KiB `user.swift.metadata` value; tmpfs (like XFS,
/// where Swift keeps its objects) holds it.
pub struct Tmpfs {
    /// Mount point.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs at `path` (needs root).
    pub fn mount(path: &Path) -> Self {
        Self::mount_sized(path, 512)
    }

    /// Mount a tmpfs of `mib` MiB at `path` (needs root).
    pub fn mount_sized(path: &Path, mib: u64) -> Self {
        std::fs::create_dir_all(path).unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={mib}m coffer-test {}",
            path.display()
        ));
        Self {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The commands with the given effects (`reads`, `changes`, `stores`) a `--json` run executed,
/// as `node$ argv` lines with run ids replaced by `RUN` (from its `command` events).
pub fn commands_run(out: &Output, effects: &[&str]) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "command" && effects.iter().any(|x| e["effect"] == *x))
        .map(|e| command_line(&e))
        .collect()
}

/// The commands of a `--dry-run --json` plan with the given effects (`reads`, `changes`,
/// `stores`, `reversal`), as [`commands_run`] writes them.
pub fn planned(out: &Output, effects: &[&str]) -> Vec<String> {
    summary(out)["actions"]
        .as_array()
        .expect("a plan has actions")
        .iter()
        .filter(|a| effects.iter().any(|e| a["effect"] == *e))
        .map(command_line)
        .collect()
}

fn command_line(e: &serde_json::Value) -> String {
    let argv: Vec<&str> = e["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    without_run_ids(&format!(
        "{}$ {}",
        e["node"].as_str().unwrap(),
        argv.join(" ")
    ))
}

/// `text` with every run id (`20261127T141551Z-4242`) replaced by `RUN`.
pub fn without_run_ids(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let digits = |from: usize, n: usize| {
            b.get(from..from + n)
                .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
        };
        if digits(i, 8)
            && b.get(i + 8) == Some(&b'T')
            && digits(i + 9, 6)
            && b.get(i + 15..i + 17) == Some(b"Z-")
            && digits(i + 17, 1)
        {
            let mut j = i + 17;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            out.push_str("RUN");
            i = j;
        } else {
            let c = text[i..].chars().next().expect("inside the text");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}
