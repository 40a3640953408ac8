//! The `swift` plugin. Backup: the object, container and account data under `/srv/node` with
//! their extended attributes (Swift keeps each object's metadata in `user.swift.metadata`; an
//! object restored without it is quarantined), the rings and builders and the rest of
//! `/etc/swift`, streamed as one archive per node; with proxy credentials, also an inventory of
//! every object and its ETag. Restore: stop the Swift services, put the files back with their
//! xattrs and owners, start the services. Validate: every object of the inventory downloads
//! through the proxy with its ETag.
//!
//! The tempauth key goes to curl through its config on stdin, never argv.

use coffer_sdk::*;

/// The archive of the node's Swift files.
pub const FILES: &str = "swift.tar";
/// Record: `node \t container/object \t etag`.
pub const OBJECT: &str = "object";
const DEFAULT_PATHS: [&str; 2] = ["/srv/node", "/etc/swift"];
const DEFAULT_SERVICES: [&str; 4] = [
    "swift-account",
    "swift-container",
    "swift-object",
    "swift-proxy",
];

/// A drill's check of the object files under "$1": each `.data` file's metadata (the pickled
/// `user.swift.metadata*` xattrs, read by an unpickler that builds plain values only: any class
/// but protocol 2's bytes constructor is refused, so a forged xattr runs no code)
/// must have the file's MD5 as its ETag and its size as its Content-Length; each
/// `container/object TAB etag` line on stdin (the backup's inventory) must be among them. Prints
/// how many objects were checked; what is wrong goes to stderr.
const CHECK_OBJECTS: &str = r#"
import hashlib, os, pickle, sys
import codecs
class Plain(pickle.Unpickler):
    def find_class(self, module, name):
        # Protocol 2 spells bytes as _codecs.encode(text, 'latin1'); nothing else is built.
        if (module, name) == ('_codecs', 'encode'):
            return codecs.encode
        raise pickle.UnpicklingError('metadata holds a %s.%s' % (module, name))
def text(v):
    return v.decode() if isinstance(v, bytes) else v
bad, seen, count = [], {}, 0
for d, _, files in os.walk(sys.argv[1]):
    for f in sorted(files):
        if not f.endswith('.data'):
            continue
        p = os.path.join(d, f)
        raw, i = b'', 0
        while True:
            try:
                raw += os.getxattr(p, 'user.swift.metadata' + (str(i) if i else ''), follow_symlinks=False)
            except OSError:
                break
            i += 1
        if not raw:
            bad.append(p + ': no user.swift.metadata')
            continue
        try:
            import io
            meta = {text(k): text(v) for k, v in Plain(io.BytesIO(raw), encoding='bytes').load().items()}
        except Exception as e:
            bad.append('%s: metadata unreadable: %s' % (p, e))
            continue
        with open(p, 'rb') as fh:
            body = fh.read()
        md5 = hashlib.md5(body).hexdigest()
        if meta.get('ETag') != md5 or str(meta.get('Content-Length')) != str(len(body)):
            bad.append('%s: ETag %s and Content-Length %s, the data has %s and %d bytes' % (
                p, meta.get('ETag'), meta.get('Content-Length'), md5, len(body)))
        name = meta.get('name', '')
        seen['/'.join(name.split('/')[2:])] = meta.get('ETag')
        count += 1
for line in sys.stdin.read().splitlines():
    obj, _, etag = line.rpartition('	')
    if seen.get(obj) != etag:
        bad.append('%s: the backup listed ETag %s, the snapshot holds %s' % (obj, etag, seen.get(obj, 'no such object')))
print(count)
for b in bad:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
"#;

/// The swift plugin.
pub struct Swift;

/// The (container/object, etag) pairs the backup listed for node `n`.
fn inventory(ctx: &Context<'_>, n: &str) -> Vec<(String, String)> {
    ctx.records
        .all(OBJECT)
        .into_iter()
        .filter_map(|r| {
            let mut f = r.splitn(3, '\t');
            let (node, path, etag) = (f.next()?, f.next()?, f.next()?);
            (node == n).then(|| (path.to_string(), etag.to_string()))
        })
        .collect()
}

fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

fn encode(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `curl -sS -K -` with `config` lines on stdin; its standard output.
fn curl(ctx: &Context<'_>, node: &str, config: &[String]) -> Result<String, PluginError> {
    Ok(ctx
        .run_ok(
            &Command::on(node, "curl")
                .args(["-sS", "-K", "-"])
                .stdin(config.join("\n") + "\n"),
        )?
        .stdout_text())
}

fn header(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// The proxy session: (token, storage URL); `None` without credentials.
fn session(ctx: &Context<'_>, node: &Node) -> Result<Option<(String, String)>, PluginError> {
    let (Some(user), Some(key)) = (ctx.settings.get("user"), ctx.settings.get("key")) else {
        return Ok(None);
    };
    let proxy = ctx
        .settings
        .get("proxy-url")
        .map(str::to_string)
        .unwrap_or_else(|| {
            let host = if node.address == "local" {
                "127.0.0.1"
            } else {
                &node.address
            };
            format!("http://{host}:8080")
        });
    let auth = ctx
        .settings
        .get("auth-url")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{proxy}/auth/v1.0"));
    let headers = curl(
        ctx,
        &node.name,
        &[
            format!("url = {}", quote(&auth)),
            format!("header = {}", quote(&format!("X-Auth-User: {user}"))),
            format!("header = {}", quote(&format!("X-Auth-Key: {key}"))),
            "dump-header = \"-\"".into(),
            "output = \"/dev/null\"".into(),
        ],
    )?;
    match (
        header(&headers, "X-Auth-Token"),
        header(&headers, "X-Storage-Url"),
    ) {
        (Some(t), Some(u)) => Ok(Some((t, u))),
        _ => Err(PluginError::CommandFailed(format!(
            "{}: the proxy at {auth} did not authenticate {user}: {}",
            node.name,
            headers.lines().next().unwrap_or("no answer")
        ))),
    }
}

fn list(
    ctx: &Context<'_>,
    node: &str,
    token: &str,
    url: &str,
) -> Result<Vec<serde_json::Value>, PluginError> {
    let body = curl(
        ctx,
        node,
        &[
            format!("url = {}", quote(&format!("{url}?format=json"))),
            format!("header = {}", quote(&format!("X-Auth-Token: {token}"))),
        ],
    )?;
    if body.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&body)
        .map_err(|e| PluginError::CommandFailed(format!("{node}: listing {url}: {e}: {body}")))
}

fn services(ctx: &Context<'_>) -> Vec<String> {
    let set = ctx.settings.all("services");
    if set.is_empty() {
        DEFAULT_SERVICES.iter().map(|s| s.to_string()).collect()
    } else {
        set.iter().map(|s| s.to_string()).collect()
    }
}

impl Plugin for Swift {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "swift",
            env!("CARGO_PKG_VERSION"),
            "Swift: /srv/node with the objects' extended attributes, the rings and /etc/swift; \
             restore puts them back with xattrs and owners and restarts the services; validate \
             downloads every object through the proxy and compares its ETag.",
        )
        .roles(&["swift", "controller"])
        .presets(&["controllers"])
        .after(&["filesystem"])
        .node_scoped(Operations::ALL)
        .multi_setting("paths", "What to keep (default /srv/node and /etc/swift)")
        .multi_setting("services", "Swift units to stop and start around a restore (default account, container, object, proxy)")
        .setting("proxy-url", "The proxy (default http://NODE:8080)", None)
        .setting("auth-url", "tempauth/v1 auth URL (default PROXY/auth/v1.0)", None)
        .setting("user", "Account:user for the inventory and validation", None)
        .setting("key", "Its key; reaches curl only through stdin", None)
        .reads("test", &["-e", "*"])
        // Only GETs: the token and the listings.
        .reads("curl", &["-sS", "-K", "-"])
        .command("systemctl", &["stop", "swift-*"])
        .command("systemctl", &["start", "swift-*"])
        // A drill: the files extracted under a scratch directory, their objects checked there.
        .reads(
            "python3",
            &["-c", &literal(CHECK_OBJECTS), "*/coffer-drill-swift-*/srv/node"],
        )
        .path("/srv/node")
        .path("/srv/node/**")
        .path("/etc/swift")
        .path("/etc/swift/**")
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        let mut report = BackupReport::default();
        let wanted: Vec<String> = match ctx.settings.all("paths") {
            p if p.is_empty() => DEFAULT_PATHS.iter().map(|s| s.to_string()).collect(),
            p => p.iter().map(|s| s.to_string()).collect(),
        };
        for node in &ctx.nodes {
            let n = node.name.as_str();
            if let Some((token, url)) = session(ctx, node)? {
                let mut count = 0;
                for c in list(ctx, n, &token, &url)? {
                    let Some(container) = c["name"].as_str() else {
                        continue;
                    };
                    for o in list(ctx, n, &token, &format!("{url}/{}", encode(container)))? {
                        if let (Some(name), Some(hash)) = (o["name"].as_str(), o["hash"].as_str()) {
                            report
                                .records
                                .push(OBJECT, format!("{n}\t{container}/{name}\t{hash}"));
                            count += 1;
                        }
                    }
                }
                ctx.info(format!("{n}: {count} object(s) listed with their ETags"));
            }
            let mut present = Vec::new();
            for p in &wanted {
                if ctx
                    .run(&Command::on(n, "test").args(["-e", p]))
                    .is_ok_and(|o| o.success())
                {
                    present.push(p.clone());
                }
            }
            if present.is_empty() {
                return Err(PluginError::Precondition(format!(
                    "{n}: none of {} exists",
                    wanted.join(", ")
                )));
            }
            let a = ctx.capture_paths(
                n,
                &PathSet {
                    paths: present,
                    excludes: vec![],
                },
                FILES,
            )?;
            ctx.info(format!("{n}: Swift files with xattrs, {} bytes", a.size));
        }
        Ok(report)
    }

    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        for node in &ctx.nodes {
            let n = node.name.as_str();
            let files = ctx
                .artifacts_of(n)
                .find(|a| a.name == FILES)
                .ok_or_else(|| {
                    PluginError::Precondition(format!("{n}: the snapshot has no {FILES}"))
                })?;
            let units = services(ctx);
            let mut undo = Vec::new();
            for u in units.iter().rev() {
                undo.push(ctx.undo_with(
                    &Command::on(n, "systemctl").args(["start", u]),
                    &format!("start {u} again"),
                )?);
                ctx.run_ok(&Command::on(n, "systemctl").args(["stop", u]))?;
            }
            ctx.restore_paths(&files.reference(), n, "/", &[])?;
            for u in &units {
                ctx.run_ok(&Command::on(n, "systemctl").args(["start", u]))?;
            }
            for u in undo {
                ctx.keep(u);
            }
            ctx.info(format!(
                "{n}: Swift files back with their xattrs; services started"
            ));
        }
        Ok(())
    }

    /// Each node's files extracted under the scratch directory (with their xattrs); every
    /// object's data matches its metadata, and every object the backup listed is there with
    /// its ETag. No Swift service is asked.
    fn drill(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let (on, root) = ctx.drill_place()?;
        let on = on.as_str();
        let mut checks = Vec::new();
        for files in ctx.artifacts.iter().filter(|a| a.name == FILES) {
            let n = files.node.as_str();
            // One directory per node, named as in the scratch directory's own pattern.
            let target = format!("{root}/{n}");
            ctx.restore_paths(&files.reference(), on, &target, &[])?;
            let listed: String = inventory(ctx, n)
                .into_iter()
                .map(|(path, etag)| format!("{path}\t{etag}\n"))
                .collect();
            let out = ctx
                .run(
                    &Command::on(on, "python3")
                        .args(["-c", CHECK_OBJECTS, &format!("{target}/srv/node")])
                        .stdin(listed),
                )
                .map_err(|e| PluginError::CommandFailed(format!("{on}: {e}")))?;
            checks.push(Check::new(
                on,
                &format!("{FILES} of {n}: every object matches its metadata and the inventory"),
                out.success(),
                if out.success() {
                    format!("{} object(s)", out.stdout_text().trim())
                } else {
                    out.stderr_text().trim().to_string()
                },
            ));
        }
        Ok(checks)
    }

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let mut checks = Vec::new();
        for node in &ctx.nodes {
            let n = node.name.as_str();
            let objects = inventory(ctx, n);
            if objects.is_empty() {
                continue;
            }
            let Some((token, url)) = session(ctx, node)? else {
                checks.push(Check::new(
                    n,
                    "objects",
                    false,
                    "no user/key to reach the proxy",
                ));
                continue;
            };
            for (path, etag) in objects {
                // A full GET: the object server checks the data against its metadata on read.
                let headers = curl(
                    ctx,
                    n,
                    &[
                        format!("url = {}", quote(&format!("{url}/{}", encode(&path)))),
                        format!("header = {}", quote(&format!("X-Auth-Token: {token}"))),
                        "dump-header = \"-\"".into(),
                        "output = \"/dev/null\"".into(),
                    ],
                )?;
                let status = headers.lines().next().unwrap_or("").to_string();
                let got = header(&headers, "Etag").unwrap_or_default();
                let ok = status.contains(" 200") && got.trim_matches('"') == etag;
                checks.push(Check::new(
                    n,
                    &format!("object {path}"),
                    ok,
                    format!("{status}; etag {got}, backup had {etag}"),
                ));
            }
        }
        Ok(checks)
    }
}

export_plugin!(Swift);

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_sdk::testing::{Call, Harness, Reply};

    fn storage() -> Harness {
        Harness::new()
            .node("s1", &["swift"])
            .node("s2", &["swift"])
            .artifact("s1", FILES, ArtifactKind::Paths, b"tar")
            .artifact("s2", FILES, ArtifactKind::Paths, b"tar")
    }

    #[test]
    fn backup_captures_the_rings_config_and_object_paths_that_exist_on_each_node() {
        let h = Harness::new()
            .node("s1", &["swift"])
            .node("s2", &["swift"])
            .reply_on("s2", &["test", "-e", "/srv/node"], Reply::exit(1));
        let report = h.backup::<Swift>().unwrap();
        let log = h.transcript();
        assert_eq!(
            *log,
            [
                "s1: test -e /srv/node",
                "s1: test -e /etc/swift",
                "capture-paths swift.tar s1: /srv/node /etc/swift",
                "s2: test -e /srv/node",
                "s2: test -e /etc/swift",
                "capture-paths swift.tar s2: /etc/swift",
            ]
        );
        // Without proxy credentials there is no inventory.
        assert!(report.records.all(OBJECT).is_empty());
        let excludes: Vec<Vec<String>> = h
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::CapturePaths { paths, .. } => Some(paths.excludes),
                _ => None,
            })
            .collect();
        assert_eq!(
            excludes,
            [Vec::<String>::new(), Vec::new()],
            "xattrs and all"
        );
    }

    #[test]
    fn backup_fails_when_none_of_the_paths_exists() {
        let h = Harness::new()
            .node("s1", &["swift"])
            .setting("paths", "/srv/node")
            .reply(&["test", "-e"], Reply::exit(1));
        let err = h.backup::<Swift>().unwrap_err();
        assert!(
            matches!(&err, PluginError::Precondition(m) if m.contains("s1: none of /srv/node")),
            "{err:?}"
        );
        assert!(
            !h.transcript()
                .iter()
                .any(|l| l.starts_with("capture-paths"))
        );
    }

    #[test]
    fn restore_stops_every_service_restores_the_files_then_starts_them() {
        let h = storage();
        h.restore::<Swift>().unwrap();
        let log = h.transcript();
        for n in ["s1", "s2"] {
            let stop: Vec<usize> = DEFAULT_SERVICES
                .iter()
                .map(|u| log.first(&format!("{n}: systemctl stop {u}")))
                .collect();
            let start: Vec<usize> = DEFAULT_SERVICES
                .iter()
                .map(|u| log.first(&format!("{n}: systemctl start {u}")))
                .collect();
            let restore = log.first(&format!("restore-paths {FILES} {n}: /"));
            for (i, u) in DEFAULT_SERVICES.iter().enumerate() {
                // Its restart is registered before each unit stops.
                let undo = log.first(&format!("undo-push {n}: systemctl start {u}"));
                assert!(undo < stop[i], "{log:#?}");
            }
            // Stopped proxy first, account last; started account first, proxy last.
            assert!(stop.windows(2).all(|w| w[0] > w[1]), "{log:#?}");
            assert!(start.windows(2).all(|w| w[0] < w[1]), "{log:#?}");
            assert!(stop[0] < restore && restore < start[0], "{log:#?}");
        }
        // One node after the other.
        assert!(
            log.first("s1: systemctl start swift-proxy") < log.first("undo-push s2"),
            "{log:#?}"
        );
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
    }

    #[test]
    fn a_service_that_fails_to_start_leaves_every_restart_to_the_host() {
        let h = storage()
            .setting("services", "swift-object")
            .setting("services", "swift-proxy")
            .reply_on(
                "s1",
                &["systemctl", "start", "swift-proxy"],
                Reply::fail(1, "failed"),
            );
        h.restore::<Swift>().unwrap_err();
        let pending = h.pending_undo_lines();
        assert_eq!(
            pending,
            [
                "s1: systemctl start swift-proxy",
                "s1: systemctl start swift-object",
            ]
        );
        // s2 is never touched.
        assert!(
            !h.transcript().iter().any(|l| l.contains("s2")),
            "{:?}",
            h.transcript()
        );
    }

    /// The drill's object check against real files: good metadata passes and counts; a
    /// forged xattr that would run code is refused without running it; a wrong ETag and an
    /// object missing from the snapshot are named.
    #[test]
    fn the_drills_object_check_reads_metadata_without_running_it() {
        let dir = std::env::temp_dir().join(format!("coffer-swift-drill-{}", std::process::id()));
        let node = dir.join("srv/node/d1/objects/1/abc");
        std::fs::create_dir_all(&node).unwrap();
        let pwned = dir.join("pwned");
        let setup = format!(
            r#"
import os, pickle, hashlib
d = {node:?}
open(d + '/1.data', 'wb').write(b'hello')
m = {{'name': '/AUTH_test/c/good', 'ETag': hashlib.md5(b'hello').hexdigest(), 'Content-Length': '5'}}
os.setxattr(d + '/1.data', 'user.swift.metadata', pickle.dumps(m, protocol=2))
class E:
    def __reduce__(self):
        return (os.system, ('touch ' + {pwned:?},))
open(d + '/2.data', 'wb').write(b'x')
os.setxattr(d + '/2.data', 'user.swift.metadata', pickle.dumps({{'ETag': E()}}, protocol=2))
"#
        );
        let ok = std::process::Command::new("python3")
            .args(["-c", &setup])
            .status()
            .unwrap();
        assert!(ok.success());
        let run = |stdin: &str| {
            let mut child = std::process::Command::new("python3")
                .args(["-c", CHECK_OBJECTS])
                .arg(dir.join("srv/node"))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(stdin.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        };
        let out = run("c/good\t5d41402abc4b2a76b9719d911017c592\nc/gone\tffff\n");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("2.data: metadata unreadable: metadata holds a posix.system"),
            "{err}"
        );
        assert!(
            err.contains("c/gone: the backup listed ETag ffff, the snapshot holds no such object"),
            "{err}"
        );
        assert!(!err.contains("c/good"), "{err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
        assert!(!pwned.exists(), "the forged metadata ran code");
        let _ = std::fs::remove_dir_all(dir);
    }
}
