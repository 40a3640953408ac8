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

/// The swift plugin.
pub struct Swift;

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

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let mut checks = Vec::new();
        for node in &ctx.nodes {
            let n = node.name.as_str();
            let objects: Vec<(String, String)> = ctx
                .records
                .all(OBJECT)
                .into_iter()
                .filter_map(|r| {
                    let mut f = r.splitn(3, '\t');
                    let (node, path, etag) = (f.next()?, f.next()?, f.next()?);
                    (node == n).then(|| (path.to_string(), etag.to_string()))
                })
                .collect();
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
}
