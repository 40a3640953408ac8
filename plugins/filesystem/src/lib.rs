//! The filesystem plugin: backs up sets of paths with all their metadata, restores them in place
//! or under another root, whole or in part, and validates a restore against the snapshot.
//!
//! Since 0.2 each backed-up path is its own archive (`tree:etc.tar` for `/etc`), so that a
//! partial restore reads only the archives that hold the selected paths; 0.1 wrote one archive
//! per node (`paths.tar`), which 0.2 still restores. Built with the `release-0-1` feature, the
//! crate is that 0.1 release again (version and layout), for the cross-version tests.

use coffer_sdk::*;

/// Paths an undercloud keeps its state in; those that exist on a node are backed up.
pub const DEFAULT_PATHS: &[&str] = &[
    "/etc",
    "/root",
    "/home/stack",
    "/srv/node",
    "/var/lib/config-data",
    "/var/lib/certmonger",
    "/var/lib/glance",
    "/var/lib/ironic",
    "/var/lib/mistral",
    "/var/lib/registry",
    "/var/log",
];

/// Name of the one artifact per node of the 0.1 layout.
pub const ARTIFACT: &str = "paths.tar";

/// Record key for each backed-up path (value: `node` TAB `path`).
const PATH_RECORD: &str = "path";

/// Record key for each path's archive (0.2 layout; value: `node` TAB `path` TAB `artifact`).
const TREE_RECORD: &str = "tree";

/// Built as the 0.1 release: one archive per node.
const RELEASE_0_1: bool = cfg!(feature = "release-0-1");

/// This build's version.
fn version() -> &'static str {
    if RELEASE_0_1 {
        "0.1.0"
    } else {
        env!("CARGO_PKG_VERSION")
    }
}

/// The artifact name of `path`'s archive: `tree:var:lib:glance.tar` for `/var/lib/glance`.
pub fn tree_artifact(path: &str) -> String {
    format!("tree{}.tar", path.trim_end_matches('/').replace('/', ":"))
}

/// The tar members (of `selection`) an archive of `root` has to give: `None` when it holds
/// none of them, an empty list for all of it (nothing selected, or `root` itself or a parent of
/// it is selected).
fn members_of(root: &str, selection: &[String]) -> Option<Vec<String>> {
    let under = |parent: &str, path: &str| {
        parent == "/" || path == parent || path.starts_with(&format!("{parent}/"))
    };
    if selection.is_empty() || selection.iter().any(|s| under(s, root)) {
        return Some(Vec::new());
    }
    let inside: Vec<String> = selection
        .iter()
        .filter(|s| under(root, s))
        .cloned()
        .collect();
    (!inside.is_empty()).then_some(inside)
}

/// The filesystem plugin.
pub struct Filesystem;

impl Filesystem {
    fn wanted_paths(ctx: &Context<'_>) -> Result<Vec<String>, PluginError> {
        let set = ctx.settings.all("paths");
        let mut paths: Vec<String> = if set.is_empty() {
            DEFAULT_PATHS.iter().map(|p| p.to_string()).collect()
        } else {
            set.iter().map(|p| p.to_string()).collect()
        };
        paths.extend(ctx.settings.all("add-path").iter().map(|p| p.to_string()));
        for p in &paths {
            if !p.starts_with('/') {
                return Err(PluginError::InvalidSettings(format!(
                    "path `{p}` is not absolute"
                )));
            }
        }
        let mut normalised: Vec<String> = paths
            .into_iter()
            .map(|p| match p.trim_end_matches('/') {
                "" => "/".to_string(),
                t => t.to_string(),
            })
            .collect();
        normalised.sort();
        normalised.dedup();
        Ok(normalised)
    }

    /// The mount points strictly inside `paths` on `node`, as `/proc/self/mountinfo` lists
    /// them there; said in the run's log.
    fn other_filesystems(
        ctx: &Context<'_>,
        node: &str,
        paths: &[String],
    ) -> Result<Vec<String>, PluginError> {
        let out = ctx.run_ok(&Command::on(node, "cat").args(["/proc/self/mountinfo"]))?;
        let inside: Vec<String> = mount_points(&out.stdout_text())
            .into_iter()
            .filter(|m| paths.iter().any(|p| inside(p, m)))
            .collect();
        if !inside.is_empty() {
            ctx.info(format!(
                "{node}: one-file-system: leaving out what is mounted at {}",
                inside.join(", ")
            ));
        }
        Ok(inside)
    }

    fn target(ctx: &Context<'_>) -> String {
        ctx.target_root.clone().unwrap_or_else(|| "/".into())
    }

    /// Each of `node`'s archives with the members to take from it: every archive of the 0.1
    /// layout with the selection as it is; a 0.2 archive only when it holds selected paths.
    fn archives<'c>(ctx: &'c Context<'_>, node: &'c str) -> Vec<(&'c Artifact, Vec<String>)> {
        let roots: Vec<(String, String)> = ctx
            .records
            .all(TREE_RECORD)
            .into_iter()
            .filter_map(|r| {
                let mut f = r.splitn(3, '\t');
                let (n, path, artifact) = (f.next()?, f.next()?, f.next()?);
                (n == node).then(|| (artifact.to_string(), path.to_string()))
            })
            .collect();
        ctx.artifacts_of(node)
            .filter(|a| a.kind == ArtifactKind::Paths)
            .filter_map(|a| match roots.iter().find(|(name, _)| name == &a.name) {
                Some((_, root)) => members_of(root, &ctx.selection).map(|m| (a, m)),
                None => Some((a, ctx.selection.clone())),
            })
            .collect()
    }
}

/// The `user.` and `trusted.` extended attributes of every file under "$2", relative to "$1",
/// in name order (so that a tree extracted in another order lists the same): where Swift keeps
/// an object's ETag, type and timestamps. GNU tar's `--compare` does not look at xattrs.
const LIST_XATTRS: &str = "cd \"$1\" && find \"$2\" -print0 | LC_ALL=C sort -z | xargs -0r \
    getfattr -h -d -e hex -m '^(user|trusted)\\.' -- 2>/dev/null; true";

/// Compare the listing on stdin (what [`LIST_XATTRS`] printed at backup) with the same files
/// now, under "$1": the differences, file and attribute, on stderr. Files created since are
/// not compared; a node without `getfattr` fails the check saying so.
const COMPARE_XATTRS: &str = "exec 3<&0; cd \"$1\" || exit 2; command -v getfattr >/dev/null \
    || { echo 'getfattr is not installed (Debian package attr): extended attributes cannot be \
    compared' >&2; exit 3; }; t=$(mktemp) || exit 2; trap 'rm -f \"$t\"' EXIT; \
    cat <&3 > \"$t\"; sed -n 's/^# file: //p' \"$t\" | tr '\\n' '\\0' | xargs -0r \
    getfattr -h -d -e hex -m '^(user|trusted)\\.' -- 2>/dev/null | diff -u \"$t\" - >&2";

/// The mount points in a `/proc/self/mountinfo` (the fifth field of each line, its `\040`-style
/// octal escapes undone).
fn mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| {
            let mut out = Vec::new();
            let b = field.as_bytes();
            let mut i = 0;
            while i < b.len() {
                let octal = b
                    .get(i + 1..i + 4)
                    .filter(|d| d[0] <= b'3' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
                match (b[i], octal) {
                    (b'\\', Some(d)) => {
                        out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                        i += 4;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect()
}

/// Whether `mount` is strictly inside `path`.
fn inside(path: &str, mount: &str) -> bool {
    mount != path && (path == "/" || mount.starts_with(&format!("{path}/")))
}

/// `path` as a glob matching only itself (`*`, `?`, `[` and `\` escaped).
fn glob_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The artifact holding the xattr listing of a path's archive.
fn xattrs_artifact(tree: &str) -> String {
    format!("xattrs:{tree}")
}

/// Tar member name of an absolute path.
fn member(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

impl Plugin for Filesystem {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "filesystem",
            version(),
            "Backs up directories and files with owners, modes, times, ACLs, extended \
             attributes, symlinks, hardlinks and sparse files; restores them in place or under \
             another root, whole or a single path, and validates a restore against the snapshot.",
        )
        // Each node's paths are its own: the host may work on several nodes at once.
        .node_scoped(Operations::ALL)
        // 0.2 reads 0.1's one archive per node as well as its own archive per path.
        .restores(if RELEASE_0_1 { "" } else { ">=0.1, <0.3" })
        .presets(&["undercloud", "controllers"])
        .multi_setting(
            "paths",
            "Paths to back up, replacing the default undercloud set (/etc, /root, /home/stack, \
             /srv/node, /var/lib/{config-data,certmonger,glance,ironic,mistral,registry}, \
             /var/log); those that do not exist are skipped",
        )
        .multi_setting("add-path", "A path to back up in addition to `paths`")
        .multi_setting(
            "exclude-path",
            "A glob to leave out: `/var/log/*.gz` from the root, `*.pyc` anywhere",
        )
        .setting(
            "one-file-system",
            "`true`: leave out what is under the mount points of other filesystems inside the \
             paths, keeping the mount points themselves (restic's --one-file-system); the \
             backup says which",
            Some("false"),
        )
        .reads("cat", &["/proc/self/mountinfo"])
        .reads("test", &["-e", "/*"])
        .reads("tar", &["--compare", "**"])
        .reads("sh", &["-c", &literal(LIST_XATTRS), "sh", "/", "*"])
        .reads("sh", &["-c", &literal(COMPARE_XATTRS), "sh", "/*"])
        .path("/**")
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        let wanted = Self::wanted_paths(ctx)?;
        let excludes: Vec<String> = ctx
            .settings
            .all("exclude-path")
            .iter()
            .map(|s| s.to_string())
            .collect();
        let one_file_system = match ctx.settings.get("one-file-system") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(PluginError::InvalidSettings(format!(
                    "one-file-system is `true` or `false`, not `{other}`"
                )));
            }
        };
        let mut report = BackupReport::default();
        for node in &ctx.nodes {
            let mounts = if one_file_system {
                Self::other_filesystems(ctx, &node.name, &wanted)?
            } else {
                Vec::new()
            };
            let mut present = Vec::new();
            for path in &wanted {
                let out = ctx
                    .run(&Command::on(&node.name, "test").args(["-e", path]))
                    .map_err(|e| {
                        PluginError::CommandFailed(format!("test -e {path} on {}: {e}", node.name))
                    })?;
                if out.success() {
                    present.push(path.clone());
                } else {
                    ctx.debug(format!("{}: {path} does not exist, skipped", node.name));
                }
            }
            if present.is_empty() {
                ctx.warn(format!(
                    "{}: none of the paths exist; nothing to back up",
                    node.name
                ));
                continue;
            }
            let mut size = 0;
            if RELEASE_0_1 {
                let mut excludes = excludes.clone();
                excludes.extend(mounts.iter().map(|m| format!("{}/*", glob_escape(m))));
                let set = PathSet {
                    paths: present.clone(),
                    excludes,
                };
                size = ctx.capture_paths(&node.name, &set, ARTIFACT)?.size;
            } else {
                for path in &present {
                    let name = tree_artifact(path);
                    // Only the mounts inside this path: one that is itself a backed-up path
                    // (a data directory on its own volume) is archived whole as that path.
                    let mut excludes = excludes.clone();
                    excludes.extend(
                        mounts
                            .iter()
                            .filter(|m| inside(path, m))
                            .map(|m| format!("{}/*", glob_escape(m))),
                    );
                    let set = PathSet {
                        paths: vec![path.clone()],
                        excludes,
                    };
                    size += ctx.capture_paths(&node.name, &set, &name)?.size;
                    let list = Command::on(&node.name, "sh").args([
                        "-c",
                        LIST_XATTRS,
                        "sh",
                        "/",
                        &member(path),
                    ]);
                    // Older grant sections do not name the listing: warn, and back up.
                    match ctx.capture(&list, &xattrs_artifact(&name)) {
                        Err(e) if e.to_string().contains("refused") => ctx.warn(format!(
                            "{}: the extended attributes of {path} are archived, but not listed \
                             for validation (not granted: {e})",
                            node.name
                        )),
                        other => drop(other?),
                    }
                    report
                        .records
                        .push(TREE_RECORD, format!("{}\t{path}\t{name}", node.name));
                }
            }
            ctx.info(format!(
                "{}: {} path(s), {size} bytes",
                node.name,
                present.len(),
            ));
            for p in present {
                report
                    .records
                    .push(PATH_RECORD, format!("{}\t{p}", node.name));
            }
        }
        Ok(report)
    }

    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        let target = Self::target(ctx);
        for node in &ctx.nodes {
            let archives = Self::archives(ctx, &node.name);
            if archives.is_empty() && ctx.artifacts_of(&node.name).next().is_some() {
                return Err(PluginError::Precondition(format!(
                    "{}: none of the selected paths ({}) is in the snapshot of this node",
                    node.name,
                    ctx.selection.join(", ")
                )));
            }
            for (artifact, members) in archives {
                ctx.info(format!(
                    "{}: restoring {} under {target}",
                    node.name, artifact.name
                ));
                ctx.restore_paths(&artifact.reference(), &node.name, &target, &members)?;
            }
        }
        Ok(())
    }

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let target = Self::target(ctx);
        let mut checks = Vec::new();
        for node in &ctx.nodes {
            checks.extend(Self::compare(ctx, &node.name, &node.name, &target));
        }
        Ok(checks)
    }

    /// Every node's archives, extracted on the drill node under the scratch directory (one
    /// directory per node), then compared with the snapshot like a validation.
    fn drill(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let (on, root) = ctx.drill_place()?;
        let mut sources: Vec<&str> = ctx.artifacts.iter().map(|a| a.node.as_str()).collect();
        sources.sort();
        sources.dedup();
        let mut checks = Vec::new();
        for src in sources {
            let target = format!("{root}/{src}");
            for (artifact, members) in Self::archives(ctx, src) {
                ctx.restore_paths(&artifact.reference(), &on, &target, &members)?;
            }
            checks.extend(Self::compare(ctx, src, &on, &target));
        }
        Ok(checks)
    }
}

impl Filesystem {
    /// Compare `src`'s archives with the files under `target` on node `on`: the contents,
    /// metadata and ACLs (`tar --compare`), and the extended attributes.
    fn compare(ctx: &Context<'_>, src: &str, on: &str, target: &str) -> Vec<Check> {
        let mut checks = Vec::new();
        for (artifact, members) in Self::archives(ctx, src) {
            let cmd = Command::on(on, "tar")
                .args(["--compare", "--file=-", "--numeric-owner", "-C", target])
                .args(members.iter().map(|p| member(p)));
            let name = format!("{} matches the snapshot under {target}", artifact.name);
            match ctx.feed(&artifact.reference(), &cmd) {
                Ok(()) => checks.push(Check::new(on, &name, true, "no differences")),
                Err(e) => checks.push(Check::new(on, &name, false, e.to_string())),
            }
            // Whole archives only: a partial restore leaves the rest as it was.
            let listing = ctx
                .artifacts_of(src)
                .find(|a| a.name == xattrs_artifact(&artifact.name));
            if let (Some(listing), true) = (listing, members.is_empty()) {
                let cmd = Command::on(on, "sh").args(["-c", COMPARE_XATTRS, "sh", target]);
                let name = format!("{}: extended attributes as in the snapshot", artifact.name);
                match ctx.feed(&listing.reference(), &cmd) {
                    Ok(()) => checks.push(Check::new(on, &name, true, "no differences")),
                    Err(e) => checks.push(Check::new(on, &name, false, e.to_string())),
                }
            }
        }
        checks
    }
}

export_plugin!(Filesystem);

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_sdk::testing::{Call, Harness, Reply};

    #[test]
    fn backs_up_only_existing_default_paths() {
        let h = Harness::new()
            .node("undercloud", &["undercloud"])
            .reply(&["test", "-e", "/srv/node"], Reply::exit(1))
            .reply(&["test", "-e", "/var/lib/registry"], Reply::exit(1))
            .setting("exclude-path", "*.pyc");
        let report = h.backup::<Filesystem>().unwrap();
        let captured = h.calls().into_iter().find_map(|c| match c {
            Call::CapturePaths { paths, .. } => Some(paths),
            _ => None,
        });
        let paths = captured.expect("one capture-paths call");
        assert!(paths.paths.contains(&"/etc".to_string()));
        assert!(!paths.paths.contains(&"/srv/node".to_string()));
        assert!(!paths.paths.contains(&"/var/lib/registry".to_string()));
        assert_eq!(paths.excludes, vec!["*.pyc".to_string()]);
        assert_eq!(report.records.all("path").len(), DEFAULT_PATHS.len() - 2);
    }

    #[test]
    fn one_file_system_leaves_out_what_is_mounted_inside_the_paths() {
        let mountinfo = "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
            30 22 0:5 / /data/mnt rw - tmpfs t rw\n\
            31 22 0:6 / /data/with\\040space rw - tmpfs t rw\n\
            32 22 0:7 / /data rw - tmpfs t rw\n\
            33 22 0:8 / /elsewhere rw - tmpfs t rw\n";
        assert_eq!(
            mount_points(mountinfo),
            ["/", "/data/mnt", "/data/with space", "/data", "/elsewhere"]
        );
        let h = Harness::new()
            .node("n1", &[])
            .setting("paths", "/data")
            .setting("add-path", "/data/mnt")
            .setting("one-file-system", "true")
            .reply(&["cat", "/proc/self/mountinfo"], Reply::stdout(mountinfo));
        h.backup::<Filesystem>().unwrap();
        let sets: Vec<PathSet> = h
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::CapturePaths { paths, .. } => Some(paths),
                _ => None,
            })
            .collect();
        // /data is itself a mount point: kept; what is mounted inside it: left out of its
        // archive; /data/mnt, a backed-up path of its own, is archived whole.
        assert_eq!(sets[0].paths, ["/data"]);
        assert_eq!(sets[0].excludes, ["/data/mnt/*", "/data/with space/*"]);
        assert_eq!(sets[1].paths, ["/data/mnt"]);
        assert!(sets[1].excludes.is_empty(), "{:?}", sets[1].excludes);
        let h = Harness::new()
            .node("n1", &[])
            .setting("one-file-system", "yes");
        assert!(matches!(
            h.backup::<Filesystem>(),
            Err(PluginError::InvalidSettings(_))
        ));
        assert_eq!(glob_escape("/a*b?[c]\\"), "/a\\*b\\?\\[c]\\\\");
    }

    #[test]
    fn paths_setting_replaces_defaults_and_add_path_extends() {
        let h = Harness::new()
            .node("n1", &[])
            .setting("paths", "/data/")
            .setting("add-path", "/opt/x");
        h.backup::<Filesystem>().unwrap();
        let commands = h.commands();
        let probes: Vec<&String> = commands.iter().filter(|c| c.contains("test -e")).collect();
        assert_eq!(probes, ["n1: test -e /data", "n1: test -e /opt/x"]);
        // Each archive's xattr listing, of the path relative to /.
        let listings: Vec<&String> = commands.iter().filter(|c| c.contains("getfattr")).collect();
        assert_eq!(listings.len(), 2, "{commands:#?}");
        assert!(listings[0].ends_with(" sh / data") && listings[1].ends_with(" sh / opt/x"));
    }

    #[test]
    fn relative_paths_are_rejected() {
        let h = Harness::new().node("n1", &[]).setting("add-path", "etc");
        let err = h.backup::<Filesystem>().unwrap_err();
        assert!(matches!(err, PluginError::InvalidSettings(m) if m.contains("`etc`")));
    }

    #[test]
    fn restore_and_validate_use_target_and_selection() {
        let h = Harness::new()
            .node("n1", &[])
            .artifact("n1", ARTIFACT, ArtifactKind::Paths, b"tar")
            .target_root("/tmp/r")
            .select("/etc/hosts");
        h.restore::<Filesystem>().unwrap();
        let checks = h.validate::<Filesystem>().unwrap();
        assert!(checks.iter().all(|c| c.ok));
        assert_eq!(
            h.calls()[0],
            Call::RestorePaths {
                artifact: ArtifactRef {
                    node: "n1".into(),
                    name: ARTIFACT.into()
                },
                node: "n1".into(),
                target: "/tmp/r".into(),
                select: vec!["/etc/hosts".into()],
            }
        );
        assert_eq!(
            h.commands(),
            vec!["n1: tar --compare --file=- --numeric-owner -C /tmp/r etc/hosts"]
        );
    }

    #[test]
    fn a_failed_compare_is_a_failed_check_naming_the_node() {
        let h = Harness::new()
            .node("n1", &[])
            .artifact("n1", ARTIFACT, ArtifactKind::Paths, b"tar")
            .reply(
                &["tar", "--compare"],
                Reply::fail(1, "etc/hosts: Contents differ"),
            );
        let checks = h.validate::<Filesystem>().unwrap();
        assert_eq!(checks.len(), 1);
        assert!(!checks[0].ok);
        assert_eq!(checks[0].node, "n1");
        assert!(checks[0].detail.contains("Contents differ"));
    }
}
