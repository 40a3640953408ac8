//! `capture-paths` kept as a restic tree ([`coffer_repository::Layout::Tree`]): the node's
//! paths listed by GNU `find`, compared with the same artifact of the last snapshot, and only
//! new and changed entries read, by GNU tar on the node (one stream for the small ones, one
//! each for the large). Nothing but GNU find and tar is needed on the node.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::io::SyncIoBridge;

use super::stream::{failure, foreign_tar, kept, not_gnu_tar, store_failed, ticker};
use super::{BackupSink, OperationEnv};
use crate::contract::v2::coffer::plugin::types::{self, CommandFailure, ExecError, StreamError};
use crate::dry_run::{ActionKind, Admission};
use crate::report::{Event, Level};
use coffer_repository::tree::{self, listing};
use coffer_repository::{ArtifactKind, ArtifactRecord, ArtifactScope, Layout};
use coffer_transport::NodeHandle;
use coffer_transport::process::{self, tail, take_stderr, take_stdout};

/// How long a listing may take, and how much it may print (a million entries print ~150 MB).
const LIST_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
const LIST_MAX: u64 = 4 << 30;

/// Whether `capture-paths` keeps trees (the default) or, with `COFFER_PATHS_LAYOUT=blob`, one
/// tar stream per path set as Coffer did before trees.
pub fn trees() -> bool {
    std::env::var("COFFER_PATHS_LAYOUT").as_deref() != Ok("blob")
}

/// What `find` on `node` says when it is not GNU find; `None` for GNU find.
async fn foreign_find(env: &OperationEnv, handle: &NodeHandle) -> Option<String> {
    let argv = env.on_node(handle, &["find".to_string(), "--version".to_string()]);
    let out = process::run(
        handle,
        &argv,
        Vec::new(),
        env.limits.default_timeout,
        1 << 16,
    )
    .await;
    let (said, code) = match out {
        Ok(f) => (
            String::from_utf8_lossy(&[f.stdout, f.stderr].concat()).into_owned(),
            f.exit_code,
        ),
        Err(e) => (e.to_string(), None),
    };
    if said.contains("GNU findutils") {
        return None;
    }
    if code == Some(127) || said.contains("not found") {
        return Some("no `find` there".into());
    }
    if said.contains("BusyBox") {
        return Some("find (busybox)".into());
    }
    Some(
        said.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no version")
            .trim()
            .to_string(),
    )
}

/// The artifact of a dry run: nothing stored.
fn nothing_stored(node: &str, name: &str) -> types::Artifact {
    types::Artifact {
        name: name.into(),
        node: node.into(),
        kind: ArtifactKind::Paths.into(),
        size: 0,
        sha256: String::new(),
    }
}

/// `stream.capture-paths` into a tree: `paths` on `node` without `excluded`, as artifact
/// `name`, the run's `sink` taking it.
pub(super) async fn capture(
    env: &OperationEnv,
    sink: &BackupSink,
    handle: &NodeHandle,
    paths: &[String],
    excluded: Vec<String>,
    name: &str,
) -> Result<types::Artifact, StreamError> {
    let node = handle.name.as_str();
    let list_argv = env.on_node(handle, &listing::command(paths, &excluded));
    let tar_argv = env.on_node(handle, &tree::tar_command());
    // A dry run lists both and runs the listing only (it only reads).
    let dry = Admission::Recorded;
    if env.admit(node, &list_argv, ActionKind::Reads, None) == dry {
        return Ok(nothing_stored(node, name));
    }
    let note = Some(format!("stores artifact {name}"));
    let stores = env.admit(node, &tar_argv, ActionKind::Stores, note);
    env.command_event(node, &list_argv, ActionKind::Reads);
    let started = Instant::now();
    let listed = process::run(handle, &list_argv, Vec::new(), LIST_TIMEOUT, LIST_MAX)
        .await
        .map_err(|e| StreamError::Exec(ExecError::Unreachable(e.to_string())))?;
    if listed.exit_code != Some(0) {
        if let Some(which) = foreign_find(env, handle).await {
            return Err(StreamError::CommandFailed(CommandFailure {
                argv: list_argv,
                exit_code: listed.exit_code,
                stderr: format!(
                    "the `find` on node {node} is not GNU find ({which}): Coffer lists paths \
                     with GNU find's -printf; install GNU find there (the `findutils` package)"
                )
                .into_bytes(),
            }));
        }
        // A path that is not there fails the backup, as tar's `Cannot stat` did; a file that
        // vanished while the listing ran is only said.
        let printed: std::collections::BTreeSet<&[u8]> = listed.stdout.split(|&b| b == 0).collect();
        let missing = paths
            .iter()
            .any(|p| !printed.contains(p.trim_end_matches('/').as_bytes()) && p != "/");
        if missing || listed.stdout.is_empty() {
            return Err(failure(&list_argv, listed.exit_code, listed.stderr));
        }
        env.reporter.report(Event::Log {
            plugin: env.plugin.name.clone(),
            level: Level::Warn,
            message: format!(
                "{node}: the listing of {name} exited with {:?} (kept): {}",
                listed.exit_code,
                String::from_utf8_lossy(&listed.stderr).trim()
            ),
        });
    }
    let list = listing::parse(&listed.stdout)
        .map_err(|e| failure(&list_argv, listed.exit_code, e.into_bytes()))?;
    // The listing's text is parsed: not held for the rest of the backup.
    drop(listed);
    let total = list.len();
    if stores == dry {
        return Ok(nothing_stored(node, name));
    }
    let writer = sink.writer.clone().ok_or_else(|| {
        StreamError::Repository("artifacts can only be written during a backup".into())
    })?;
    // The same artifact of the last snapshot, if it is a tree: unchanged files come from it.
    let key = format!("{}/{node}/{name}", env.plugin.name);
    let parent = sink.parents.get(&key).cloned();
    let plan = {
        let (writer, parent) = (writer.clone(), parent.clone());
        tokio::task::spawn_blocking(move || {
            match parent.as_deref().and_then(|p| writer.parent(p)) {
                Some(mut lookup) => tree::plan(list, Some(&mut lookup)),
                None => tree::plan(list, None),
            }
        })
        .await
        .expect("plan task")
    };
    let names = tree::tar_names(&plan);
    env.command_event(node, &tar_argv, ActionKind::Stores);
    let mut p = handle
        .spawn(&tar_argv)
        .await
        .map_err(|e| StreamError::Exec(ExecError::SpawnFailed(e.to_string())))?;
    let stdin_task = process::feed_stdin(&mut p, names);
    let stderr = tail(take_stderr(&mut p));
    let bridge = SyncIoBridge::new(take_stdout(&mut p));
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let store = {
        let (writer, progress) = (writer.clone(), progress.clone());
        let (plugin, run_id, node, artifact) = (
            env.plugin.name.clone(),
            env.run_id.clone(),
            node.to_string(),
            name.to_string(),
        );
        let paths = paths.to_vec();
        let parent = parent.clone();
        tokio::task::spawn_blocking(move || {
            writer.store_tree(
                &node,
                &plugin,
                &artifact,
                &run_id,
                &paths,
                plan,
                bridge,
                parent.as_deref(),
                progress,
            )
        })
    };
    let expected = sink.expected.get(&key).copied();
    let ticker = ticker(env, node, name, progress, expected, started);
    let stored = store.await.expect("store task");
    ticker.abort();
    let stored = match stored {
        Ok(stored) => stored,
        Err(e) => {
            p.kill().await;
            stdin_task.abort();
            return Err(store_failed(&tar_argv, e));
        }
    };
    let code = p.wait().await;
    let stderr = stderr.await.unwrap_or_default();
    let exit = code.map_err(|e| StreamError::Exec(ExecError::Unreachable(e.to_string())));
    if !matches!(exit, Ok(Some(0) | Some(1))) {
        // Nothing of a stream whose command failed is kept.
        let _ = writer.discard(std::slice::from_ref(&stored.snapshot));
        let exit = exit?;
        let f = CommandFailure {
            argv: tar_argv.clone(),
            exit_code: exit,
            stderr: stderr.clone(),
        };
        return Err(match foreign_tar(env, handle).await {
            Some(which) => not_gnu_tar(node, &which, f),
            None => StreamError::CommandFailed(f),
        });
    }
    let mut changed = stored.changed.clone();
    if matches!(exit, Ok(Some(1))) {
        changed.extend(
            String::from_utf8_lossy(&stderr)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_string()),
        );
    }
    for c in &changed {
        env.reporter.report(Event::Log {
            plugin: env.plugin.name.clone(),
            level: Level::Warn,
            message: format!("{node}: {name}: {c}"),
        });
    }
    env.reporter.report(Event::Log {
        plugin: env.plugin.name.clone(),
        level: Level::Info,
        message: format!(
            "{node}: {name}: {total} entries, {} file(s) read ({} bytes){}",
            stored.files_read,
            stored.bytes_read,
            match &parent {
                Some(p) => format!(
                    ", the rest unchanged since artifact snapshot {}",
                    &p[..8.min(p.len())]
                ),
                None => String::new(),
            }
        ),
    });
    let record = ArtifactRecord {
        node: node.into(),
        plugin: env.plugin.name.clone(),
        plugin_version: env.plugin.version.clone(),
        plugin_digest: env.plugin.digest.clone(),
        contract: env.plugin.contract.clone(),
        name: name.into(),
        kind: ArtifactKind::Paths,
        size: stored.size,
        sha256: format!("tree:{}", stored.tree),
        snapshot: stored.snapshot,
        path: "/".into(),
        scope: ArtifactScope::Node,
        excludes: Some(excluded),
        layout: Layout::Tree,
        changed,
        only: Vec::new(),
    };
    Ok(kept(env, sink, record, started))
}
