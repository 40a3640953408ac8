//! `restore --delete` (restic's flag): make each restored path set exactly the snapshot. The
//! archive's member names are read from the repository; what is under the same paths on the
//! node now is listed by the node's own GNU tar with the excludes the backup used (so nothing
//! the backup left out is ever touched, matched by tar itself as at backup); what the node has
//! and the archive does not is removed, top-most first, before the extraction (which then sets
//! the directories' times as recorded). A dry run lists it and removes nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use coffer_repository::{ArtifactReader, ArtifactRecord};
use coffer_transport::NodeHandle;
use coffer_transport::process;

use super::OperationEnv;
use super::stream::{exclude_args, failure, member};
use crate::contract::v2::coffer::plugin::types::StreamError;
use crate::dry_run::{ActionKind, Admission};
use crate::report::{Event, Level};

/// How many removed paths the run's message names before it counts the rest.
const NAMED: usize = 20;

/// Refuse `--delete`, before anything is extracted, for an artifact that does not say what its
/// backup excluded (written before Coffer recorded it): its excluded files could not be told
/// from strays.
pub(super) fn check(record: &ArtifactRecord) -> Result<(), StreamError> {
    match record.excludes {
        Some(_) => Ok(()),
        None => Err(StreamError::Repository(format!(
            "artifact `{}` of {} was written before Coffer recorded what a backup left out, so \
             --delete cannot tell those files from strays; restore this snapshot without \
             --delete (nothing was changed)",
            record.name, record.node
        ))),
    }
}

/// Remove what is under the restored paths on the node and not in the archive (see the module
/// documentation); `select` limits it as it limited the extraction.
pub(super) async fn remove(
    env: &OperationEnv,
    handle: &NodeHandle,
    record: &ArtifactRecord,
    reader: Arc<ArtifactReader>,
    target: &str,
    select: &[String],
) -> Result<(), StreamError> {
    let node = handle.name.as_str();
    let members = {
        let record = record.clone();
        tokio::task::spawn_blocking(move || archive_members(&reader, &record))
            .await
            .expect("listing task")?
    };
    let roots: Vec<Vec<u8>> = if select.is_empty() {
        members
            .iter()
            .filter(|m| !members.contains(parent(m)))
            .cloned()
            .collect()
    } else {
        select
            .iter()
            .map(|p| member(p).into_bytes())
            .filter(|m| members.contains(m))
            .collect()
    };
    if roots.is_empty() {
        return Ok(());
    }
    let present = list_on_node(env, handle, record, target, &roots).await?;
    let strays: Vec<&Vec<u8>> = present.difference(&members).collect();
    // A stray directory goes with everything in it: only the top-most ones are named.
    let topmost: Vec<&Vec<u8>> = strays
        .iter()
        .filter(|s| !present.contains(parent(s)) || members.contains(parent(s)))
        .copied()
        .collect();
    if topmost.is_empty() {
        return Ok(());
    }
    let root = target.trim_end_matches('/');
    let paths: Vec<String> = topmost
        .iter()
        .map(|m| format!("{root}/{}", String::from_utf8_lossy(m)))
        .collect();
    let mut named = paths
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > NAMED {
        named.push_str(&format!(" and {} more", paths.len() - NAMED));
    }
    let argv: Vec<String> = ["xargs", "-0", "-r", "rm", "-rf", "--"]
        .map(String::from)
        .to_vec();
    let note = format!(
        "--delete: {} path(s) under {} that snapshot artifact {} does not have: {named}",
        paths.len(),
        node,
        record.name
    );
    let argv = env.on_node(handle, &argv);
    if env.admit(node, &argv, ActionKind::Changes, Some(note)) == Admission::Recorded {
        env.reporter.report(Event::Log {
            plugin: env.plugin.name.clone(),
            level: Level::Warn,
            message: format!("{node}: would remove (--delete) {named}"),
        });
        return Ok(());
    }
    env.command_event(node, &argv, ActionKind::Changes);
    let mut stdin = Vec::new();
    for m in &topmost {
        stdin.extend_from_slice(root.as_bytes());
        stdin.push(b'/');
        stdin.extend_from_slice(m);
        stdin.push(0);
    }
    run_ok(env, handle, &argv, stdin, 1 << 20).await?;
    env.reporter.report(Event::Log {
        plugin: env.plugin.name.clone(),
        level: Level::Warn,
        message: format!("{node}: removed (--delete) {named}"),
    });
    Ok(())
}

/// A member's parent (`""` for a top-level one).
fn parent(m: &[u8]) -> &[u8] {
    match m.iter().rposition(|&b| b == b'/') {
        Some(i) => &m[..i],
        None => b"",
    }
}

/// The member names of a `paths` artifact, as GNU tar wrote them (relative to `/`, no
/// trailing slash), read through the repository (its SHA-256 checked as it streams).
fn archive_members(
    reader: &ArtifactReader,
    record: &ArtifactRecord,
) -> Result<BTreeSet<Vec<u8>>, StreamError> {
    let (rx, tx) = std::io::pipe().map_err(|e| StreamError::Repository(e.to_string()))?;
    std::thread::scope(|s| {
        let writer = s.spawn(move || reader.read(record, tx));
        let mut archive = tar::Archive::new(rx);
        let mut names = BTreeSet::new();
        let listed = (|| -> std::io::Result<()> {
            for entry in archive.entries()? {
                let mut entry = entry?;
                // A sparse file in a pax archive is stored under a made-up name; its own is
                // in `GNU.sparse.name`.
                let mut name = entry.path_bytes().into_owned();
                if let Some(extensions) = entry.pax_extensions()? {
                    for e in extensions.flatten() {
                        if e.key_bytes() == b"GNU.sparse.name" {
                            name = e.value_bytes().to_vec();
                        }
                    }
                }
                names.insert(normalise(&name));
            }
            Ok(())
        })();
        // Drain what follows the end of the archive, so the reader finishes its check.
        let mut rest = archive.into_inner();
        let _ = std::io::copy(&mut rest, &mut std::io::sink());
        let read = writer.join().expect("artifact reader");
        read.map_err(|e| StreamError::Repository(e.to_string()))?;
        listed.map_err(|e| {
            StreamError::Repository(format!(
                "artifact `{}` of {} is not a readable archive: {e}",
                record.name, record.node
            ))
        })?;
        Ok(names)
    })
}

/// A member name without `./` in front or `/` behind.
fn normalise(name: &[u8]) -> Vec<u8> {
    let name = name.strip_prefix(b"./").unwrap_or(name);
    let mut name = name.to_vec();
    while name.len() > 1 && name.last() == Some(&b'/') {
        name.pop();
    }
    name
}

/// What is under `roots` (members) below `target` on the node now, as the backup's tar would
/// take it with the same excludes: `tar --create --file=/dev/null --verbose` (GNU tar reads no
/// file data for `/dev/null`), names in tar's `escape` quoting, one per line.
async fn list_on_node(
    env: &OperationEnv,
    handle: &NodeHandle,
    record: &ArtifactRecord,
    target: &str,
    roots: &[Vec<u8>],
) -> Result<BTreeSet<Vec<u8>>, StreamError> {
    let mut argv: Vec<String> = [
        "tar",
        "--create",
        "--file=/dev/null",
        "--verbose",
        "--quoting-style=escape",
        "--ignore-failed-read",
    ]
    .map(String::from)
    .to_vec();
    argv.push(format!("--directory={target}"));
    for glob in record.excludes.iter().flatten() {
        argv.extend(exclude_args(glob));
    }
    argv.extend(["--null", "--verbatim-files-from", "--files-from=-"].map(String::from));
    let mut stdin = Vec::new();
    for r in roots {
        stdin.extend_from_slice(r);
        stdin.push(0);
    }
    let argv = env.on_node(handle, &argv);
    // A read: it runs in a dry run too, so the plan can name what would go.
    env.admit(&handle.name, &argv, ActionKind::Reads, None);
    let listed = run_ok(env, handle, &argv, stdin, 1 << 30).await?;
    Ok(listed
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| normalise(&unescape(l)))
        .collect())
}

/// Run `argv` on the node with `stdin` and require exit code 0; its standard output.
async fn run_ok(
    env: &OperationEnv,
    handle: &NodeHandle,
    argv: &[String],
    stdin: Vec<u8>,
    max_output: u64,
) -> Result<Vec<u8>, StreamError> {
    let done = process::run(handle, argv, stdin, env.limits.default_timeout, max_output)
        .await
        .map_err(|e| StreamError::Exec(super::exec::exec_error(e)))?;
    match done.exit_code {
        Some(0) => Ok(done.stdout),
        code => Err(failure(argv, code, done.stderr)),
    }
}

/// Undo GNU tar's `escape` quoting: `\\`, the C escapes and `\ooo` octal bytes.
fn unescape(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i] != b'\\' || i + 1 == line.len() {
            out.push(line[i]);
            i += 1;
            continue;
        }
        let c = line[i + 1];
        let simple = match c {
            b'\\' => Some(b'\\'),
            b'n' => Some(b'\n'),
            b't' => Some(b'\t'),
            b'r' => Some(b'\r'),
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'v' => Some(11),
            b'?' => Some(b'?'),
            b'"' => Some(b'"'),
            b'\'' => Some(b'\''),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
            continue;
        }
        let digits = line[i + 1..]
            .iter()
            .take(3)
            .take_while(|d| (b'0'..=b'7').contains(d))
            .count();
        if digits == 3 {
            let v = line[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b'\\');
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_escape_quoting_is_undone() {
        assert_eq!(unescape(br"a\\b\nc\303\251 d"), b"a\\b\nc\xc3\xa9 d");
        assert_eq!(unescape(br"plain"), b"plain");
        assert_eq!(unescape(br"trailing\"), b"trailing\\");
    }

    #[test]
    fn an_artifact_that_does_not_say_what_it_left_out_is_refused() {
        let mut record = ArtifactRecord {
            node: "c0".into(),
            plugin: "filesystem".into(),
            plugin_version: "0.2.0".into(),
            plugin_digest: String::new(),
            contract: "2.4.0".into(),
            name: "tree.tar".into(),
            kind: coffer_repository::ArtifactKind::Paths,
            size: 0,
            sha256: String::new(),
            snapshot: String::new(),
            path: String::new(),
            scope: coffer_repository::ArtifactScope::Node,
            excludes: None,
            layout: coffer_repository::Layout::Blob,
            changed: Vec::new(),
            only: Vec::new(),
        };
        let err = check(&record).unwrap_err();
        assert!(
            matches!(&err, StreamError::Repository(m) if m.contains("without --delete")),
            "{err:?}"
        );
        record.excludes = Some(Vec::new());
        assert!(check(&record).is_ok());
    }

    #[test]
    fn names_lose_their_dot_and_slash() {
        assert_eq!(normalise(b"./srv/node/"), b"srv/node");
        assert_eq!(normalise(b"srv/node/a"), b"srv/node/a");
        assert_eq!(parent(b"srv/node/a"), b"srv/node");
        assert_eq!(parent(b"srv"), b"");
    }
}
