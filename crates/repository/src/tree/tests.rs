//! Trees against the real GNU find and tar on a real directory, into a real repository:
//! every kind of entry comes back as it was, and a second run reads only what changed.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::source::ALONE;
use super::*;
use crate::{ArtifactKind, ArtifactRecord, ArtifactScope, Layout, Password, Repo, RepoLocation};

fn sh(script: &str) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
}

/// Back up `root` as artifact `name` with `parent`; the record and what was read.
fn back_up(
    location: &RepoLocation,
    password: &Password,
    root: &Path,
    parent: Option<&str>,
) -> (ArtifactRecord, crate::StoredTree) {
    let paths = vec![root.display().to_string()];
    let argv = listing::command(&paths, &["*.skip".to_string()]);
    let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let list = listing::parse(&out.stdout).unwrap();
    let writer = Repo::open(location, password)
        .unwrap()
        .into_writer()
        .unwrap();
    let plan = match parent.and_then(|p| writer.parent(p)) {
        Some(mut lookup) => plan(list, Some(&mut lookup)),
        None => plan(list, None),
    };
    let names = tar_names(&plan);
    let tar = tar_command();
    let mut child = Command::new(&tar[0])
        .args(&tar[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&names));
    let stdout = child.stdout.take().unwrap();
    let stored = writer
        .store_tree(
            "n1",
            "filesystem",
            "tree",
            "run",
            &paths,
            plan,
            stdout,
            parent,
            Arc::default(),
        )
        .unwrap();
    feeder.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    let record = ArtifactRecord {
        node: "n1".into(),
        plugin: "filesystem".into(),
        plugin_version: "0".into(),
        plugin_digest: String::new(),
        contract: "2.4.0".into(),
        name: "tree".into(),
        kind: ArtifactKind::Paths,
        size: stored.size,
        sha256: format!("tree:{}", stored.tree),
        snapshot: stored.snapshot.clone(),
        path: "/".into(),
        scope: ArtifactScope::Node,
        excludes: None,
        layout: Layout::Tree,
        changed: Vec::new(),
        only: Vec::new(),
    };
    (record, stored)
}

/// `ls -lan --time-style=full-iso` and the xattrs of everything under `dir`, relative.
fn describe(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "cd \"$1\" && find . -mindepth 1 | sort | while IFS= read -r f; do \
             stat -c '%n %F %a %u %g %s %y %t:%T %h' \"$f\"; \
             getfattr -h -d -m - -e hex \"$f\" 2>/dev/null | grep -v '^#' | sed \"s|^|$f |\"; \
             done",
        )
        .arg("sh")
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_tree_comes_back_whole_and_a_rerun_reads_only_what_changed() {
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src");
    let s = src.display();
    sh(&format!(
        "set -e; mkdir -p {s}/etc/nova {s}/empty {s}/deep/a/b/c
         printf 'conf\\n' > {s}/etc/nova/nova.conf; chmod 640 {s}/etc/nova/nova.conf
         chown 123:456 {s}/etc/nova/nova.conf
         printf x > {s}/etc/nova/left.skip
         head -c 3000000 /dev/urandom > {s}/deep/a/b/c/middle
         head -c {big} /dev/urandom > {s}/big.bin
         ln {s}/deep/a/b/c/middle {s}/hardlink
         ln -s ../etc/nova/nova.conf {s}/deep/link
         ln -s /a/target/that/is/rather/long/$(printf 'x%.0s' $(seq 1 120)) {s}/longlink
         truncate -s 100M {s}/sparse; printf 'end' >> {s}/sparse
         mkfifo {s}/fifo; mknod {s}/null c 1 3
         printf 'odd name' > \"{s}/etc/a name with spaces and \\\\ and é\"
         setfattr -n user.swift.metadata -v 0x80027d71 {s}/etc/nova/nova.conf
         setfacl -m u:1000:r {s}/etc/nova/nova.conf; setfacl -d -m g:27:rx {s}/etc
         chmod 4755 {s}/deep/a/b/c
         touch -d '2001-02-03 04:05:06.123456789' {s}/deep/a/b/c/middle",
        big = ALONE + 12345
    ));
    let location = RepoLocation::Local(scratch.path().join("repo"));
    let password = Password::new("pw");
    Repo::init(&location, &password).unwrap();
    let (record, first) = back_up(&location, &password, &src, None);
    assert!(first.changed.is_empty(), "{:?}", first.changed);
    // Every file read on the first run (the hard link's content too).
    assert_eq!(first.files_read, 6, "{first:?}");

    let restore = |record: &ArtifactRecord, into: &Path| {
        let reader = Repo::open(&location, &password)
            .unwrap()
            .into_reader()
            .unwrap();
        std::fs::create_dir_all(into).unwrap();
        let mut tar = Vec::new();
        reader.read(record, &mut tar).unwrap();
        // Holes are not written: the stream is no longer than the one recorded.
        assert!(tar.len() as u64 <= record.size);
        let mut child = Command::new("tar")
            .args(["-x", "-f", "-", "--numeric-owner", "--acls", "--xattrs"])
            .arg("--xattrs-include=*")
            .arg("-C")
            .arg(into)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&tar).unwrap();
        assert!(child.wait().unwrap().success());
        into.join(src.strip_prefix("/").unwrap())
    };
    let out = restore(&record, &scratch.path().join("out1"));
    let want = describe(&src);
    let mut want: Vec<&str> = want.lines().filter(|l| !l.contains(".skip")).collect();
    want.sort();
    let got = describe(&out);
    let mut got: Vec<&str> = got.lines().collect();
    got.sort();
    assert_eq!(got, want);
    // The sparse file keeps its holes (written back as GNU sparse members).
    let sparse = std::fs::metadata(out.join("sparse")).unwrap();
    assert_eq!(sparse.len(), 100 * 1024 * 1024 + 3);
    assert!(
        sparse.blocks() * 512 < 16 << 20,
        "{} blocks",
        sparse.blocks()
    );
    assert_eq!(
        std::fs::read(out.join("sparse")).unwrap(),
        std::fs::read(src.join("sparse")).unwrap()
    );
    // Hard links are links again.
    let m = std::fs::metadata(out.join("hardlink")).unwrap();
    assert_eq!(m.nlink(), 2);
    assert_eq!(
        m.ino(),
        std::fs::metadata(out.join("deep/a/b/c/middle"))
            .unwrap()
            .ino()
    );
    assert_eq!(
        std::fs::read(out.join("big.bin")).unwrap(),
        std::fs::read(src.join("big.bin")).unwrap()
    );

    // A rewrite that keeps size and mtime is caught by its ctime; nothing else is read.
    sh(&format!(
        "set -e; cd {s}/deep/a/b/c; m=$(stat -c %y middle); head -c 3000000 /dev/urandom \
         > middle.new; cat middle.new > middle; rm middle.new; touch -d \"$m\" middle; \
         printf 'new' > {s}/etc/new-file"
    ));
    let (record2, second) = back_up(&location, &password, &src, Some(&first.snapshot));
    assert_eq!(
        second.files_read, 3,
        "middle, its hard link and new-file: {second:?}"
    );
    assert_eq!(second.bytes_read, 6_000_003);
    let out2 = restore(&record2, &scratch.path().join("out2"));
    assert_eq!(
        std::fs::read(out2.join("deep/a/b/c/middle")).unwrap(),
        std::fs::read(src.join("deep/a/b/c/middle")).unwrap()
    );
    assert_eq!(std::fs::read(out2.join("etc/new-file")).unwrap(), b"new");
    assert_eq!(
        std::fs::read(out2.join("big.bin")).unwrap(),
        std::fs::read(src.join("big.bin")).unwrap()
    );
    let got = describe(&out2);
    assert!(
        got.contains("./etc/nova/nova.conf user.swift.metadata=0x80027d71"),
        "{got}"
    );
}
