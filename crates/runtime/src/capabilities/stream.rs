//! Streams between nodes and the repository. The bytes go from the command's pipe into
//! rustic_core (or back) on a blocking thread; they never enter the plugin.
//!
//! Paths travel as POSIX (pax) GNU tar streams made on the node itself, with numeric owners,
//! ACLs, every extended attribute and sparse files: the same commands work on the local node
//! and on any node reached over SSH and need nothing but GNU tar (and find) there. A backup
//! keeps them as restic trees ([`super::tree_paths`]); a restore gets the tree back as such a
//! stream. Path sets written before trees (one tar stream each) read back as they were.

use std::io::BufWriter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio_util::io::SyncIoBridge;

use super::{HostState, OperationEnv, Phase};
use crate::contract::v2::coffer::plugin::stream as wstream;
use crate::contract::v2::coffer::plugin::types::{self, CommandFailure, ExecError, StreamError};
use crate::dry_run::{ActionKind, Admission};
use crate::report::Event;
use coffer_repository::{
    ArtifactKind, ArtifactRecord, ArtifactScope, RepoError, RepoLocation, artifact_path,
};
use coffer_transport::NodeHandle;
use coffer_transport::process::{self, tail, take_stderr, take_stdout};

/// Options for archiving paths with everything `capture-paths` promises.
const TAR_METADATA: &[&str] = &[
    "--numeric-owner",
    "--acls",
    "--xattrs",
    "--xattrs-include=*",
];

/// A repository failure as the plugin sees it: an artifact whose bytes do not match its
/// digest is `integrity`, anything else `repository`.
pub(super) fn repo_error(e: RepoError) -> StreamError {
    match e {
        e @ RepoError::Integrity { .. } => StreamError::Integrity(e.to_string()),
        e => StreamError::Repository(e.to_string()),
    }
}

/// A store of `argv`'s output that failed: a failed read of that output is the command's
/// failure, anything else the repository's.
pub(super) fn store_failed(argv: &[String], e: RepoError) -> StreamError {
    match e {
        RepoError::StreamRead { source, .. } => failure(
            argv,
            None,
            format!("stopped by Coffer, reading its output failed: {source}").into_bytes(),
        ),
        other => repo_error(other),
    }
}

pub(super) fn failure(argv: &[String], exit_code: Option<i32>, stderr: Vec<u8>) -> StreamError {
    StreamError::CommandFailed(CommandFailure {
        argv: argv.to_vec(),
        exit_code,
        stderr,
    })
}

/// Report `progress` of artifact `name` on `node` (out of `total` when known) every half
/// second until the returned task is aborted.
pub(super) fn ticker(
    env: &OperationEnv,
    node: &str,
    name: &str,
    progress: Arc<AtomicU64>,
    total: Option<u64>,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    let reporter = env.reporter.clone();
    let (plugin, node, name) = (env.plugin.name.clone(), node.to_string(), name.to_string());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            reporter.report(Event::Bytes {
                plugin: plugin.clone(),
                node: node.clone(),
                name: name.clone(),
                bytes: progress.load(Ordering::Relaxed),
                total,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
    })
}

/// A writer that counts what goes through it.
struct Counting<W> {
    inner: W,
    count: Arc<AtomicU64>,
}

impl<W: std::io::Write> std::io::Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What an artifact stored from a command's output is.
enum Stored {
    /// A command's output (`capture`): only exit code 0 keeps it.
    Output,
    /// A GNU tar archive of paths (`capture-paths`), which left out `excludes`: exit code 1
    /// (a file changed while it was read) keeps it too, with a warning.
    Paths { excludes: Vec<String> },
}

/// The backup's sink, once `name` is known to be a new artifact's fit name on `node`.
fn new_artifact<'e>(
    env: &'e OperationEnv,
    node: &str,
    name: &str,
) -> Result<&'e Arc<super::BackupSink>, StreamError> {
    let Phase::Backup(sink) = &env.phase else {
        return Err(StreamError::Repository(
            "artifacts can only be written during a backup".into(),
        ));
    };
    {
        let written = sink.written.lock().expect("written lock");
        if written
            .iter()
            .any(|a| a.plugin == env.plugin.name && a.node == node && a.name == name)
        {
            return Err(StreamError::ArtifactExists(name.into()));
        }
    }
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(StreamError::Repository(format!(
            "artifact name `{name}` must be non-empty and contain no `/`"
        )));
    }
    Ok(sink)
}

/// Run `argv` on `node` (with `stdin`) and store its stdout as artifact `name`. An exit code
/// `what` accepts keeps the artifact (any but 0 with a warning); anything else discards it.
async fn store_output(
    env: &OperationEnv,
    node: &str,
    argv: Vec<String>,
    stdin: Vec<u8>,
    name: &str,
    what: Stored,
) -> Result<types::Artifact, StreamError> {
    let (kind, accepted, excludes): (_, &[i32], _) = match what {
        Stored::Output => (ArtifactKind::Stream, &[0], None),
        Stored::Paths { excludes } => (ArtifactKind::Paths, &[0, 1], Some(excludes)),
    };
    let handle = env.node(node).map_err(StreamError::Exec)?.clone();
    let admitted = env.admit(
        node,
        &env.on_node(&handle, &argv),
        ActionKind::Stores,
        Some(format!("stores artifact {name}")),
    );
    if admitted == Admission::Recorded {
        return Ok(types::Artifact {
            name: name.into(),
            node: node.into(),
            kind: kind.into(),
            size: 0,
            sha256: String::new(),
        });
    }
    let sink = new_artifact(env, node, name)?;
    let writer = sink.writer.clone().ok_or_else(|| {
        StreamError::Repository("artifacts can only be written during a backup".into())
    })?;
    let argv = env.on_node(&handle, &argv);
    env.command_event(node, &argv, ActionKind::Stores);
    let started = Instant::now();
    let mut p = handle
        .spawn(&argv)
        .await
        .map_err(|e| StreamError::Exec(ExecError::SpawnFailed(e.to_string())))?;
    let stdin_task = process::feed_stdin(&mut p, stdin);
    let stderr = tail(take_stderr(&mut p));
    let bridge = SyncIoBridge::new(take_stdout(&mut p));
    let (plugin, run_id, node_name, artifact) = (
        env.plugin.name.clone(),
        env.run_id.clone(),
        node.to_string(),
        name.to_string(),
    );
    let progress = Arc::new(AtomicU64::new(0));
    let store = {
        let (writer, progress) = (writer.clone(), progress.clone());
        tokio::task::spawn_blocking(move || {
            writer.store(&node_name, &plugin, &artifact, &run_id, bridge, progress)
        })
    };
    let expected = sink
        .expected
        .get(&format!("{}/{node}/{name}", env.plugin.name))
        .copied();
    let ticker = ticker(env, node, name, progress.clone(), expected, started);
    let stored = store.await.expect("store task");
    ticker.abort();
    let stored = match stored {
        Ok(stored) => stored,
        Err(e) => {
            p.kill().await;
            stdin_task.abort();
            return Err(store_failed(&argv, e));
        }
    };
    let code = p.wait().await;
    let stderr = stderr.await.unwrap_or_default();
    let exit = match code {
        Ok(c) => c,
        Err(e) => {
            let _ = writer.discard(std::slice::from_ref(&stored.snapshot));
            return Err(StreamError::Exec(ExecError::Unreachable(e.to_string())));
        }
    };
    let mut rejected = (!exit.is_some_and(|c| accepted.contains(&c)))
        .then(|| failure(&argv, exit, stderr.clone()));
    // A tar that is not GNU tar may also exit 1 (BusyBox's, on an option it lacks): that is
    // no archive at all, whatever GNU tar's 1 means.
    if kind == ArtifactKind::Paths
        && exit != Some(0)
        && let Some(which) = foreign_tar(env, &handle).await
    {
        let failed = CommandFailure {
            argv: argv.clone(),
            exit_code: exit,
            stderr: stderr.clone(),
        };
        rejected = Some(not_gnu_tar(node, &which, failed));
    }
    if let Some(e) = rejected {
        let discard = {
            let writer = writer.clone();
            let id = stored.snapshot.clone();
            tokio::task::spawn_blocking(move || writer.discard(&[id]))
        };
        discard.await.expect("discard task").map_err(repo_error)?;
        return Err(e);
    }
    if exit != Some(0) {
        env.reporter.report(Event::Log {
            plugin: env.plugin.name.clone(),
            level: crate::report::Level::Warn,
            message: format!(
                "{node}: `{}` exited with {:?} (kept): {}",
                argv.join(" "),
                exit,
                String::from_utf8_lossy(&stderr).trim()
            ),
        });
    }
    let record = ArtifactRecord {
        node: node.into(),
        plugin: env.plugin.name.clone(),
        plugin_version: env.plugin.version.clone(),
        plugin_digest: env.plugin.digest.clone(),
        contract: env.plugin.contract.clone(),
        name: name.into(),
        kind,
        size: stored.size,
        sha256: stored.sha256,
        snapshot: stored.snapshot,
        path: artifact_path(node, &env.plugin.name, name),
        // The run sets the plugin's declared scope when it writes the manifest.
        scope: ArtifactScope::Node,
        excludes,
        layout: coffer_repository::Layout::Blob,
        changed: Vec::new(),
        only: Vec::new(),
    };
    Ok(kept(env, sink, record, started))
}

/// Keep `record` among what this run wrote (begun at `started`), say so, and give the plugin
/// its answer.
pub(super) fn kept(
    env: &OperationEnv,
    sink: &super::BackupSink,
    record: ArtifactRecord,
    started: Instant,
) -> types::Artifact {
    env.reporter.report(Event::Artifact {
        plugin: env.plugin.name.clone(),
        node: record.node.clone(),
        name: record.name.clone(),
        size: record.size,
        seconds: started.elapsed().as_secs_f64(),
    });
    let answer = types::Artifact {
        name: record.name.clone(),
        node: record.node.clone(),
        kind: record.kind.into(),
        size: record.size,
        sha256: record.sha256.clone(),
    };
    sink.written.lock().expect("written lock").push(record);
    answer
}

/// `stream.capture`.
pub async fn capture(
    env: &OperationEnv,
    node: &str,
    argv: Vec<String>,
    name: &str,
) -> Result<types::Artifact, StreamError> {
    env.allow_command(node, &argv).map_err(StreamError::Exec)?;
    store_output(env, node, argv, Vec::new(), name, Stored::Output).await
}

/// The tar member name of an absolute path.
pub(super) fn member(path: &str) -> String {
    match path.trim_start_matches('/').trim_end_matches('/') {
        "" => ".".into(),
        m => m.into(),
    }
}

/// Tar `--exclude` options for a glob: absolute globs are anchored at the root.
pub(super) fn exclude_args(glob: &str) -> [String; 2] {
    if let Some(rel) = glob.strip_prefix('/') {
        ["--anchored".into(), format!("--exclude={rel}")]
    } else {
        ["--no-anchored".into(), format!("--exclude={glob}")]
    }
}

fn absolute(paths: &[String]) -> Result<(), StreamError> {
    match paths
        .iter()
        .find(|p| !p.starts_with('/') || p.contains('\0'))
    {
        Some(p) => Err(StreamError::Exec(ExecError::Refused(format!(
            "path `{p}` is not absolute"
        )))),
        None => Ok(()),
    }
}

/// `stream.capture-paths`.
pub async fn capture_paths(
    env: &OperationEnv,
    node: &str,
    set: wstream::PathSet,
    name: &str,
) -> Result<types::Artifact, StreamError> {
    absolute(&set.paths)?;
    if set.paths.is_empty() {
        return Err(StreamError::Exec(ExecError::Refused(
            "no paths to archive".into(),
        )));
    }
    let handle = env
        .allow_paths(node, &set.paths)
        .map_err(StreamError::Exec)?;
    // Access and change times are left out of the pax headers: they differ on every read and
    // would make unchanged files look new to deduplication (and cannot be restored anyway).
    let mut argv: Vec<String> = [
        "tar",
        "--create",
        "--file=-",
        "--format=posix",
        "--pax-option=delete=atime,delete=ctime",
        "--sparse",
    ]
    .iter()
    .chain(TAR_METADATA)
    .map(|s| s.to_string())
    .collect();
    argv.push("--directory=/".into());
    let repository = match &env.phase {
        Phase::Backup(sink) => Some(&sink.repository),
        _ => None,
    };
    let mut excluded = Vec::new();
    // Coffer's own state (run journals, the undo journal, the lock) changes while it runs and
    // must never come back from a snapshot: left out on the Coffer host, as the repository is.
    if handle.is_local() {
        excluded.push(coffer_repository::state_dir().display().to_string());
    }
    match repository {
        Some(RepoLocation::Local(path)) if handle.is_local() => {
            excluded.push(path.display().to_string());
        }
        Some(RepoLocation::Remote { node, path }) if node.name == handle.name => {
            excluded.push(path.clone());
        }
        _ => {}
    }
    excluded.extend(set.excludes.iter().cloned());
    if super::tree_paths::trees() {
        let sink = new_artifact(env, node, name)?;
        return super::tree_paths::capture(env, sink, handle, &set.paths, excluded, name).await;
    }
    for glob in &excluded {
        argv.extend(exclude_args(glob));
    }
    // Member names go through stdin, NUL-separated: any byte in a name survives.
    argv.extend(["--null", "--verbatim-files-from", "--files-from=-"].map(String::from));
    let mut names = Vec::new();
    for p in &set.paths {
        names.extend_from_slice(member(p).as_bytes());
        names.push(0);
    }
    // GNU tar exits 1 when a file changed while it was read: the archive is still whole.
    let what = Stored::Paths { excludes: excluded };
    store_output(env, node, argv, names, name, what).await
}

fn find_artifact(
    env: &OperationEnv,
    r: &wstream::ArtifactRef,
) -> Result<(ArtifactRecord, Arc<coffer_repository::ArtifactReader>), StreamError> {
    let Phase::Snapshot(source) = &env.phase else {
        return Err(StreamError::ArtifactNotFound(format!(
            "{} (no snapshot in this operation)",
            r.name
        )));
    };
    let record = source
        .manifest
        .artifacts
        .iter()
        .find(|a| a.plugin == env.plugin.name && a.node == r.node && a.name == r.name)
        .cloned()
        .ok_or_else(|| StreamError::ArtifactNotFound(format!("{} of node {}", r.name, r.node)))?;
    Ok((record, source.reader.clone()))
}

/// Write `record` into the stdin of `argv` on `node` and wait for it; `effect` is what the
/// command does (a dry run runs it only if it reads).
async fn feed_into(
    env: &OperationEnv,
    record: ArtifactRecord,
    reader: Arc<coffer_repository::ArtifactReader>,
    node: &str,
    argv: Vec<String>,
    effect: ActionKind,
) -> Result<(), StreamError> {
    let handle = env.node(node).map_err(StreamError::Exec)?;
    // Read the whole artifact before a command that changes anything runs: a damaged
    // repository must fail the restore before a single file or row is overwritten. The reader
    // keeps what it verified, so the feed below (and a validation's compare after it) reads
    // that instead of the repository. A command that only reads is fed at once: the stream's
    // own digest check fails it all the same.
    if effect != ActionKind::Reads {
        verify(&reader, &record).await?;
    }
    let argv = env.on_node(handle, &argv);
    let note = Some(format!(
        "from artifact {} of {} ({} bytes, verified)",
        record.name, record.node, record.size
    ));
    if env.admit(node, &argv, effect, note) == Admission::Recorded {
        return Ok(());
    }
    env.command_event(node, &argv, effect);
    let mut p = handle
        .spawn(&argv)
        .await
        .map_err(|e| StreamError::Exec(ExecError::SpawnFailed(e.to_string())))?;
    let stdin = p.stdin.take().expect("piped stdin");
    let stderr = tail(take_stderr(&mut p));
    let stdout = tail(take_stdout(&mut p));
    let bridge = SyncIoBridge::new(stdin);
    let progress = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let ticker = ticker(
        env,
        node,
        &record.name,
        progress.clone(),
        Some(record.size),
        started,
    );
    let (name, size) = (record.name.clone(), record.size);
    let count = progress.clone();
    let read = tokio::task::spawn_blocking(move || {
        let counting = Counting {
            inner: bridge,
            count,
        };
        reader.read(&record, BufWriter::with_capacity(1 << 20, counting))
    })
    .await
    .expect("read task");
    ticker.abort();
    env.reporter.report(Event::Bytes {
        plugin: env.plugin.name.clone(),
        node: node.into(),
        name,
        bytes: progress.load(Ordering::Relaxed),
        total: Some(size),
        seconds: started.elapsed().as_secs_f64(),
    });
    let limit = env.limits.default_timeout;
    let code = match tokio::time::timeout(limit, p.wait()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(StreamError::Exec(ExecError::Unreachable(e.to_string()))),
        Err(_) => {
            p.kill().await;
            return Err(StreamError::Exec(ExecError::TimedOut(
                limit.as_millis() as u64
            )));
        }
    };
    // A repository that failed while feeding is the cause of whatever the command then did
    // (a write into its stdin failing is the command's).
    match read {
        Err(RepoError::StreamWrite { .. }) | Ok(()) => {}
        Err(e) => return Err(repo_error(e)),
    }
    if code != Some(0) {
        // What the command said explains a failure better than the broken pipe we saw.
        let mut said = stderr.await.unwrap_or_default();
        let out = stdout.await.unwrap_or_default();
        if !out.is_empty() {
            said.extend_from_slice(b"\n");
            said.extend_from_slice(&out);
        }
        return Err(failure(&argv, code, said));
    }
    read.map_err(repo_error)
}

/// Read `record` whole and check it, keeping it for the reads that follow
/// ([`coffer_repository::ArtifactReader::verify`]).
async fn verify(
    reader: &Arc<coffer_repository::ArtifactReader>,
    record: &ArtifactRecord,
) -> Result<(), StreamError> {
    let (reader, record) = (reader.clone(), record.clone());
    tokio::task::spawn_blocking(move || reader.verify(&record))
        .await
        .expect("verify task")
        .map_err(repo_error)
}

/// `stream.feed`.
pub async fn feed(
    env: &OperationEnv,
    artifact: wstream::ArtifactRef,
    node: &str,
    argv: Vec<String>,
) -> Result<(), StreamError> {
    env.allow_command(node, &argv).map_err(StreamError::Exec)?;
    let (record, reader) = find_artifact(env, &artifact)?;
    let effect = env.effect_of(&argv);
    feed_into(env, record, reader, node, argv, effect).await
}

/// `stream.restore-paths`.
pub async fn restore_paths(
    env: &OperationEnv,
    artifact: wstream::ArtifactRef,
    node: &str,
    target: &str,
    select: Vec<String>,
) -> Result<(), StreamError> {
    absolute(&select)?;
    absolute(std::slice::from_ref(&target.to_string()))?;
    let handle = env
        .allow_paths(node, &select)
        .map_err(StreamError::Exec)?
        .clone();
    let (mut record, reader) = find_artifact(env, &artifact)?;
    if record.layout == coffer_repository::Layout::Tree {
        // A tree reads only the selected paths' blobs.
        record.only = select.iter().map(|p| member(p)).collect();
    }
    if record.kind != ArtifactKind::Paths {
        return Err(StreamError::Repository(format!(
            "artifact `{}` is a command's output, not a set of paths",
            record.name
        )));
    }
    let delete = match &env.phase {
        Phase::Snapshot(source) if source.delete => {
            super::strays::check(&record)?;
            true
        }
        _ => false,
    };
    let mkdir = env.on_node(
        &handle,
        &[
            "mkdir".to_string(),
            "-p".into(),
            "--".into(),
            target.to_string(),
        ],
    );
    if env.admit(node, &mkdir, ActionKind::Changes, None) == Admission::Run {
        env.command_event(node, &mkdir, ActionKind::Changes);
        let made = process::run(
            &handle,
            &mkdir,
            Vec::new(),
            env.limits.default_timeout,
            1 << 20,
        )
        .await
        .map_err(|e| StreamError::Exec(super::exec::exec_error(e)))?;
        if made.exit_code != Some(0) {
            return Err(failure(&mkdir, made.exit_code, made.stderr));
        }
    }
    // Strays go first: the extraction then sets the directories' times as recorded. Both
    // read the artifact verified once, before anything is removed.
    if delete {
        verify(&reader, &record).await?;
        super::strays::remove(env, &handle, &record, reader.clone(), target, &select).await?;
    }
    let extract = extract_argv(target, &select);
    match feed_into(env, record, reader, node, extract, ActionKind::Changes).await {
        Err(StreamError::CommandFailed(f)) => Err(match foreign_tar(env, &handle).await {
            Some(which) => not_gnu_tar(node, &which, f),
            None => StreamError::CommandFailed(f),
        }),
        done => done,
    }
}

/// What `tar --version` says on the node (in the plugin's container where it has one) when
/// that tar is not GNU tar (BusyBox's, in a minimal container); `None` for GNU tar. Asked only
/// after a tar exited non-zero: a working tar costs nothing.
pub(super) async fn foreign_tar(env: &OperationEnv, handle: &NodeHandle) -> Option<String> {
    let version = env.on_node(handle, &["tar".to_string(), "--version".to_string()]);
    let said = process::run(
        handle,
        &version,
        Vec::new(),
        env.limits.default_timeout,
        1 << 16,
    )
    .await
    .map(|o| {
        let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&o.stderr));
        text
    })
    .unwrap_or_default();
    if said.contains("GNU tar") {
        return None;
    }
    Some(
        said.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no version")
            .trim()
            .to_string(),
    )
}

/// `f`, told as a failure of a tar that is not GNU tar (`which`), naming the node and what
/// Coffer needs of tar.
pub(super) fn not_gnu_tar(node: &str, which: &str, f: CommandFailure) -> StreamError {
    let mut stderr = format!(
        "the `tar` on node {node} is not GNU tar ({which}): Coffer archives and restores paths \
         with GNU tar's --xattrs, --acls, --sparse, --format=posix and --null file lists; \
         install GNU tar there (the `tar` package), or run this plugin outside the minimal \
         container. Its own words: "
    )
    .into_bytes();
    stderr.extend_from_slice(&f.stderr);
    StreamError::CommandFailed(CommandFailure { stderr, ..f })
}

/// The `tar --extract` command line of `restore-paths`.
fn extract_argv(target: &str, select: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "tar",
        "--extract",
        "--file=-",
        "--same-permissions",
        "--same-owner",
    ]
    .iter()
    .chain(TAR_METADATA)
    .map(|s| s.to_string())
    .collect();
    argv.push(format!("--directory={target}"));
    if !select.is_empty() {
        argv.push("--".into());
        argv.extend(select.iter().map(|p| member(p)));
    }
    argv
}

impl wstream::Host for HostState {
    async fn capture(
        &mut self,
        node: String,
        argv: Vec<String>,
        name: String,
    ) -> wasmtime::Result<Result<types::Artifact, types::StreamError>> {
        let env = self.env.clone();
        let t = Instant::now();
        let r = capture(&env, &node, argv, &name).await;
        if let Err(e) = &r {
            env.note_stream(&node, e).await;
        }
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn capture_paths(
        &mut self,
        node: String,
        paths: wstream::PathSet,
        name: String,
    ) -> wasmtime::Result<Result<types::Artifact, types::StreamError>> {
        let env = self.env.clone();
        let t = Instant::now();
        let r = capture_paths(&env, &node, paths, &name).await;
        if let Err(e) = &r {
            env.note_stream(&node, e).await;
        }
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn feed(
        &mut self,
        artifact: wstream::ArtifactRef,
        node: String,
        argv: Vec<String>,
    ) -> wasmtime::Result<Result<(), types::StreamError>> {
        let env = self.env.clone();
        let t = Instant::now();
        let r = feed(&env, artifact, &node, argv).await;
        if let Err(e) = &r {
            env.note_stream(&node, e).await;
        }
        self.host_time += t.elapsed();
        Ok(r)
    }

    async fn restore_paths(
        &mut self,
        artifact: wstream::ArtifactRef,
        node: String,
        target: String,
        select: Vec<String>,
    ) -> wasmtime::Result<Result<(), types::StreamError>> {
        let env = self.env.clone();
        let t = Instant::now();
        let r = restore_paths(&env, artifact, &node, &target, select).await;
        if let Err(e) = &r {
            env.note_stream(&node, e).await;
        }
        self.host_time += t.elapsed();
        Ok(r)
    }
}
