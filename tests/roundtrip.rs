//! Back up real trees through the filesystem plugin, restore them, and compare every byte and
//! every piece of metadata.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, chown, lchown, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use support::*;

fn set_mtime(p: &Path, secs: u64, nanos: u32) {
    let t = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
    File::options()
        .write(!p.is_dir())
        .read(p.is_dir())
        .open(p)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

/// A tree with everything the filesystem plugin promises to keep.
fn build_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/swift")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::create_dir_all(root.join("srv/node/d1/objects")).unwrap();
    for (i, size) in [0usize, 1, 4095, 4096, 65_537, 1 << 20, 7 << 20]
        .iter()
        .enumerate()
    {
        fs::write(root.join(format!("etc/file-{i}")), noise(i as u64, *size)).unwrap();
    }
    // A 1 GiB sparse file with data at its start, middle and end.
    {
        let mut f = File::create(root.join("srv/disk.img")).unwrap();
        f.set_len(1 << 30).unwrap();
        for off in [0u64, 512 << 20, (1 << 30) - 4096] {
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(&noise(off, 4096)).unwrap();
        }
    }
    // Swift-like object with metadata in xattrs, one 4 KiB binary value.
    let obj = root.join("srv/node/d1/objects/1234.data");
    fs::write(&obj, b"object body").unwrap();
    xattr::set(&obj, "user.swift.metadata", &noise(99, 4096)).unwrap();
    xattr::set(&obj, "user.swift.metadata_checksum", b"abc123").unwrap();
    xattr::set(root.join("etc/swift"), "user.dir-note", b"on a directory").unwrap();
    // A POSIX ACL (stored as system.posix_acl_access).
    fs::write(root.join("etc/swift/swift.conf"), "[swift-hash]\n").unwrap();
    sh(&format!(
        "setfacl -m u:65534:r,g:65534:rw {}",
        root.join("etc/swift/swift.conf").display()
    ));
    sh(&format!(
        "setfacl -d -m u:65534:rx {}",
        root.join("etc/swift").display()
    ));
    // Symlinks, one dangling, and a hardlink pair.
    symlink("file-1", root.join("etc/link-to-file")).unwrap();
    symlink("/nonexistent/target", root.join("etc/dangling")).unwrap();
    fs::write(root.join("etc/hard-a"), b"same inode").unwrap();
    fs::hard_link(root.join("etc/hard-a"), root.join("etc/hard-b")).unwrap();
    // Odd names: a newline, non-UTF-8 bytes, a leading dash, spaces, a glob character.
    for name in [
        &b"new\nline"[..],
        b"bad-\xff\xfe-utf8",
        b"-leading-dash",
        b"with spaces",
        b"star*name",
    ] {
        fs::write(root.join(OsStr::from_bytes(name)), name).unwrap();
    }
    // Modes and owners.
    let secret = root.join("etc/secret");
    fs::write(&secret, b"s3cr3t").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    chown(&secret, Some(1234), Some(5678)).unwrap();
    let suid = root.join("etc/tool");
    fs::write(&suid, b"#!/bin/sh\n").unwrap();
    chown(&suid, Some(0), Some(42)).unwrap();
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4751)).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    lchown(root.join("etc/dangling"), Some(1234), Some(1234)).unwrap();
    chown(root.join("srv/node"), Some(160), Some(160)).unwrap();
    // Timestamps with nanoseconds, directories last so writes inside do not move them.
    for (i, p) in [
        "etc/file-3",
        "etc/secret",
        "srv/disk.img",
        "srv/node/d1/objects/1234.data",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&root.join(p), 1_600_000_000 + i as u64, 123_456_789);
    }
    for (i, d) in [
        "empty",
        "etc/swift",
        "srv/node/d1/objects",
        "srv/node/d1",
        "srv/node",
        "srv",
        "etc",
        "",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&root.join(d), 1_500_000_000 + i as u64, 987_654_321);
    }
}

#[test]
fn round_trip_keeps_every_byte_xattr_acl_owner_mode_and_mtime() {
    let s = Scratch::new();
    let fs = Tmpfs::mount(&s.path("fs"));
    let src = fs.path.join("data");
    build_tree(&src);
    let before = record_tree(&src);
    s.filesystem(&[&src]);
    s.init();
    let id = s.backup(&[]);

    // A drill: the snapshot extracted under a scratch directory and compared there (contents,
    // metadata, ACLs, xattrs); the tree itself untouched, the scratch directory removed.
    let drills = fs.path.join("drills");
    fs::create_dir_all(&drills).unwrap();
    let d = summary(&s.ok(&["drill", "--scratch", drills.to_str().unwrap(), "--json"]));
    assert_eq!(d["drills"][0]["outcome"], "passed", "{d}");
    assert_eq!(d["drills"][0]["checks"].as_array().unwrap().len(), 2, "{d}");
    assert_same_tree(&before, &record_tree(&src));
    assert_eq!(fs::read_dir(&drills).unwrap().count(), 0);

    // Under another root.
    let out = fs.path.join("restored");
    s.ok(&["restore", &id, "--target", out.to_str().unwrap()]);
    let restored_root = out.join(src.strip_prefix("/").unwrap());
    assert_same_tree(&before, &record_tree(&restored_root));
    // The 1 GiB file came back sparse, not as a gigabyte of zeros on disk.
    let blocks = std::os::unix::fs::MetadataExt::blocks(
        &fs::metadata(restored_root.join("srv/disk.img")).unwrap(),
    );
    assert!(
        blocks * 512 < 64 << 20,
        "disk.img takes {} bytes on disk",
        blocks * 512
    );

    // In place, after the original is gone.
    fs::remove_dir_all(&src).unwrap();
    s.ok(&["restore", "latest"]);
    assert_same_tree(&before, &record_tree(&src));

    s.ok(&["validate", "latest"]);
    // Only an object's `user.swift.metadata` changed (its ETag, as Swift keeps it): tar's
    // compare does not see it, the validation does, naming the file and the attribute.
    let obj = src.join("srv/node/d1/objects/1234.data");
    let before_meta = xattr::get(&obj, "user.swift.metadata").unwrap().unwrap();
    xattr::set(&obj, "user.swift.metadata", b"{\"ETag\": \"forged\"}").unwrap();
    let v = s.run(&["validate", "latest"]);
    let text = String::from_utf8_lossy(&v.stdout);
    assert_eq!(v.status.code(), Some(5), "{text}");
    assert!(
        text.contains("extended attributes as in the snapshot")
            && text.contains("1234.data")
            && text.contains("user.swift.metadata"),
        "{text}"
    );
    xattr::set(&obj, "user.swift.metadata", &before_meta).unwrap();
    s.ok(&["validate", "latest"]);

    // A validation after changing a file fails, naming the node and the plugin.
    fs::write(src.join("etc/secret"), b"tampered").unwrap();
    let v = s.run(&["validate", "latest"]);
    assert_eq!(
        v.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(text.contains("FAILED filesystem on local"), "{text}");
}

/// Snapshots written before path sets became trees (one tar stream per path set, as
/// `COFFER_PATHS_LAYOUT=blob` still writes them) restore and validate as they did; the next
/// backup makes a tree of the same paths without a parent to compare with.
#[test]
fn path_sets_kept_as_tar_streams_still_restore_next_to_trees() {
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/a.conf"), b"old").unwrap();
    s.filesystem(&[&src]);
    s.init();
    let layout = |out: &std::process::Output| -> Vec<String> {
        summary(out)["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "paths")
            .map(|a| a["layout"].as_str().unwrap_or("blob").to_string())
            .collect()
    };
    let old = s.ok_with(&["backup", "--json"], "COFFER_PATHS_LAYOUT", "blob");
    assert_eq!(layout(&old), ["blob"]);
    let old_id = summary(&old)["snapshot"].as_str().unwrap().to_string();
    fs::write(src.join("etc/a.conf"), b"new").unwrap();
    let new = s.ok(&["backup", "--json"]);
    assert_eq!(layout(&new), ["tree"]);
    // The old snapshot comes back in place, validated, then the new one.
    s.ok(&["restore", &old_id]);
    assert_eq!(fs::read(src.join("etc/a.conf")).unwrap(), b"old");
    s.ok(&["validate", &old_id]);
    s.ok(&["restore", "latest"]);
    assert_eq!(fs::read(src.join("etc/a.conf")).unwrap(), b"new");
    s.ok(&["validate", "latest"]);
}

#[test]
fn a_single_path_restores_alone() {
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(src.join("keep/sub")).unwrap();
    fs::write(src.join("keep/sub/a"), b"a").unwrap();
    fs::write(src.join("other"), b"o").unwrap();
    s.filesystem(&[&src]);
    s.init();
    s.backup(&[]);
    let out = s.path("one");
    let wanted = src.join("keep/sub");
    s.ok(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--path",
        wanted.to_str().unwrap(),
    ]);
    let base = out.join(src.strip_prefix("/").unwrap());
    assert_eq!(fs::read(base.join("keep/sub/a")).unwrap(), b"a");
    assert!(!base.join("other").exists());
    // A path that is not in the snapshot is a clear error.
    let missing = src.join("nope");
    let r = s.run(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--path",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("Not found in archive"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
}

#[test]
fn excludes_the_repository_and_the_state_directory_are_left_out() {
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(src.join("logs")).unwrap();
    fs::write(src.join("logs/a.log"), b"log").unwrap();
    fs::write(src.join("logs/a.log.gz"), b"gz").unwrap();
    fs::write(src.join("x.pyc"), b"pyc").unwrap();
    fs::write(src.join("keep"), b"k").unwrap();
    // The repository lives inside the backed-up tree.
    let d = s.path("deployment.toml");
    s.filesystem(&[s.dir.path()]);
    let text = fs::read_to_string(&d).unwrap();
    assert!(text.contains(&s.repo().display().to_string()));
    s.init();
    let abs_glob = format!("{}/logs/*.gz", src.display());
    s.backup(&["--exclude-path", &abs_glob, "--exclude-path", "*.pyc"]);
    let out = s.path("restored");
    s.ok(&[
        "restore",
        "latest",
        "--target",
        out.to_str().unwrap(),
        "--no-validate",
    ]);
    let base = out.join(s.dir.path().strip_prefix("/").unwrap());
    assert!(base.join("data/keep").exists());
    assert!(base.join("data/logs/a.log").exists());
    assert!(
        !base.join("data/logs/a.log.gz").exists(),
        "absolute exclude ignored"
    );
    assert!(
        !base.join("data/x.pyc").exists(),
        "relative exclude ignored"
    );
    assert!(base.join("password").exists());
    assert!(
        !base.join("repo").exists(),
        "the repository was backed up into itself"
    );
    assert!(
        !base.join("state").exists(),
        "Coffer's state directory (run journals) was backed up"
    );
}

/// `restore --delete` makes the backed-up paths exactly the snapshot: what was created since
/// (a file, a directory tree, a file in a kept directory) goes, named by the dry run first,
/// while what the backup left out stays — an excluded file, and the repository and Coffer's
/// state directory, which live inside the tree; a sparse file and xattrs come back as without
/// `--delete`.
#[test]
fn restore_delete_removes_what_the_snapshot_lacks_and_nothing_the_backup_left_out() {
    let s = Scratch::new();
    let tmpfs = Tmpfs::mount(&s.path("fs"));
    let src = tmpfs.path.join("data");
    build_tree(&src);
    fs::write(src.join("x.pyc"), b"pyc").unwrap();
    s.filesystem(&[s.dir.path()]);
    s.init();
    // Coffer's own state directory (run journals) is in the tree too: Coffer leaves it out.
    s.backup(&["--exclude-path", "*.pyc"]);
    let before = record_tree(&src);
    fs::write(src.join("stray-file"), b"s").unwrap();
    fs::create_dir_all(src.join("stray-dir/deep")).unwrap();
    fs::write(src.join("stray-dir/deep/f"), b"f").unwrap();
    fs::write(src.join("etc/swift/new.conf"), b"n").unwrap();
    fs::write(src.join("later.pyc"), b"p").unwrap();
    let strays = ["stray-file", "stray-dir", "etc/swift/new.conf"];

    let out = s.ok(&["restore", "latest", "--delete", "--dry-run"]);
    let plan = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for stray in strays {
        assert!(
            plan.contains(&src.join(stray).display().to_string()),
            "the plan names {stray}:\n{plan}"
        );
        assert!(src.join(stray).exists(), "the dry run removed {stray}");
    }
    let removal = plan
        .lines()
        .find(|l| l.contains("would remove (--delete)"))
        .unwrap_or_else(|| panic!("no removal said: {plan}"));
    assert!(
        !removal.contains("stray-dir/deep"),
        "only the top-most: {removal}"
    );
    for kept in [".pyc", "/repo", "/state"] {
        assert!(!removal.contains(kept), "{removal}");
    }

    s.ok(&["restore", "latest", "--delete"]);
    for stray in strays {
        assert!(!src.join(stray).exists(), "{stray} is still there");
    }
    assert!(
        src.join("later.pyc").exists(),
        "an excluded file was removed"
    );
    let mut after = record_tree(&src);
    after.remove(Path::new("later.pyc"));
    assert_same_tree(&before, &after);
    s.ok(&["check"]);
    assert_eq!(s.snapshot_count(), 1);
}

/// `one-file-system = "true"` (restic's `--one-file-system`): what is mounted inside a backed-up
/// path is left out, the mount point itself kept and the backup saying so; an exact restore
/// (`--delete`) then leaves what is in the mount alone. Without it, the mount is backed up.
#[test]
fn one_file_system_leaves_out_what_is_mounted_inside_the_paths() {
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("kept"), b"on the same filesystem").unwrap();
    let mount = Tmpfs::mount_sized(&src.join("mnt"), 16);
    fs::write(mount.path.join("inside"), b"another filesystem").unwrap();
    s.filesystem(&[&src]);
    s.init();
    let crossing = s.backup(&[]);
    s.edit_deployment(
        "[plugin.filesystem.settings]\n",
        "[plugin.filesystem.settings]\none-file-system = \"true\"\n",
    );
    let out = s.ok(&["backup", "--json"]);
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&format!(
            "one-file-system: leaving out what is mounted at {}",
            mount.path.display()
        )),
        "{said}"
    );
    let staying = summary(&out)["snapshot"].as_str().unwrap().to_string();

    let restored = |id: &str, to: &str| {
        let target = s.path(to);
        s.ok(&["restore", id, "--target", target.to_str().unwrap()]);
        target.join(src.strip_prefix("/").unwrap())
    };
    let within = restored(&staying, "within");
    assert_eq!(
        fs::read(within.join("kept")).unwrap(),
        b"on the same filesystem"
    );
    assert!(within.join("mnt").is_dir(), "the mount point is kept");
    assert!(
        !within.join("mnt/inside").exists(),
        "the mount's content is left out"
    );
    let across = restored(&crossing, "across");
    assert_eq!(
        fs::read(across.join("mnt/inside")).unwrap(),
        b"another filesystem"
    );

    // An exact restore in place removes a stray, not what is in the mount.
    fs::write(src.join("stray"), b"s").unwrap();
    fs::write(mount.path.join("new"), b"n").unwrap();
    s.ok(&["restore", &staying, "--delete"]);
    assert!(!src.join("stray").exists());
    assert!(mount.path.join("inside").exists() && mount.path.join("new").exists());
    s.ok(&["check"]);
}

#[test]
fn a_second_backup_of_a_one_percent_change_stores_about_one_percent() {
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(&src).unwrap();
    // 300 MiB: large against rustic_core's chunk sizes (0.5 to 8 MiB), so the few chunks a
    // change touches around its edges do not dominate.
    for i in 0..30u64 {
        fs::write(src.join(format!("f{i:02}")), noise(1000 + i, 10 << 20)).unwrap();
    }
    s.filesystem(&[&src]);
    s.init();
    s.backup(&[]);
    let first = du(&s.repo());
    // Change 1% of the 300 MiB: 3 MiB inside one file. (The chunker's polynomial is random per
    // repository; measured growth 9 to 17 MB; the bound leaves room for its largest chunks.)
    let mut f = File::options().write(true).open(src.join("f07")).unwrap();
    f.seek(SeekFrom::Start(4 << 20)).unwrap();
    f.write_all(&noise(7, 3 << 20)).unwrap();
    drop(f);
    s.backup(&[]);
    let growth = du(&s.repo()) - first;
    eprintln!("a 1% change grew the repository by {growth} bytes on {first}");
    assert!(first > 290 << 20, "first backup stored only {first} bytes");
    assert!(
        growth < first / 10,
        "the second backup added {growth} bytes to {first}: deduplication is not working"
    );
    assert_eq!(s.snapshot_count(), 2);
}

#[test]
fn a_changed_file_with_the_same_size_and_mtime_is_read_again() {
    // rustic_core reuses an entry from a parent snapshot when its metadata looks unchanged:
    // Coffer must never hand back the old bytes.
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(&src).unwrap();
    let f = src.join("same");
    fs::write(&f, b"AAAAAAAA").unwrap();
    set_mtime(&f, 1_600_000_000, 0);
    set_mtime(&src, 1_600_000_000, 0);
    s.filesystem(&[&src]);
    s.init();
    s.backup(&[]);
    fs::write(&f, b"BBBBBBBB").unwrap();
    set_mtime(&f, 1_600_000_000, 0);
    set_mtime(&src, 1_600_000_000, 0);
    s.backup(&[]);
    let out = s.path("out");
    s.ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(
        fs::read(out.join(f.strip_prefix("/").unwrap())).unwrap(),
        b"BBBBBBBB"
    );
}

#[test]
fn the_compiled_plugin_cache_is_used_on_the_second_run() {
    let s = Scratch::new();
    s.deployment("[plugin.filesystem]\n");
    let cache = s.path("cache");
    let list = |_: ()| {
        let out = s
            .command(&["plugins", "list", "--json"])
            .env("COFFER_CACHE_DIR", &cache)
            .output()
            .unwrap();
        assert!(out.status.success());
        let v: serde_json::Value =
            serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
        v["compile"]["cached"].as_bool().unwrap()
    };
    assert!(!list(()), "first run compiles");
    assert!(
        list(()),
        "second run loads the compiled component from the cache"
    );
}

#[test]
fn restic_reads_a_coffer_repository() {
    // The disaster path: no coffer at hand, only restic. A path set is a restic tree: restic
    // lists it, finds in it, diffs two runs and restores one directory of it.
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(src.join("nova")).unwrap();
    fs::write(src.join("keystone.conf"), b"[DEFAULT]\n").unwrap();
    fs::write(src.join("nova/nova.conf"), b"[api]\n").unwrap();
    fs::write(src.join("other.conf"), b"other\n").unwrap();
    s.filesystem(&[&src]);
    s.init();
    let tree_of = |out: &std::process::Output| {
        summary(out)["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["path"] == "/")
            .expect("the path set's tree artifact")["snapshot"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = tree_of(&s.ok(&["backup", "--json"]));
    fs::write(src.join("keystone.conf"), b"[DEFAULT]\ndebug = true\n").unwrap();
    fs::write(src.join("new.conf"), b"new\n").unwrap();
    let second = tree_of(&s.ok(&["backup", "--json"]));
    let restic = |args: &[&str]| {
        let out = std::process::Command::new("restic")
            .args(["-r", s.repo().to_str().unwrap(), "--no-cache"])
            .args(args)
            .env("RESTIC_PASSWORD_FILE", s.path("password"))
            .output()
            .expect("restic is installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let data = src.display().to_string();
    restic(&["check", "--read-data"]);
    let listed = restic(&["ls", "--recursive", &second, &data]);
    for f in ["keystone.conf", "nova/nova.conf", "new.conf", "other.conf"] {
        assert!(listed.contains(&format!("{data}/{f}")), "{f} in {listed}");
    }
    let found = restic(&["find", "--snapshot", &second, "nova.conf"]);
    assert!(found.contains(&format!("{data}/nova/nova.conf")), "{found}");
    let diff = restic(&["diff", &first, &second]);
    assert!(
        diff.contains(&format!("M    {data}/keystone.conf")),
        "{diff}"
    );
    assert!(diff.contains(&format!("+    {data}/new.conf")), "{diff}");
    assert!(!diff.contains("other.conf"), "{diff}");
    // One directory out of the snapshot, byte for byte, and nothing else.
    let target = s.path("restic-restore");
    restic(&[
        "restore",
        &second,
        "--target",
        target.to_str().unwrap(),
        "--include",
        &format!("{data}/nova"),
    ]);
    let at = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(fs::read(at.join("nova/nova.conf")).unwrap(), b"[api]\n");
    assert!(!at.join("keystone.conf").exists());
    let dumped = restic(&["dump", &second, &format!("{data}/keystone.conf")]);
    assert_eq!(dumped, "[DEFAULT]\ndebug = true\n");
}

#[test]
fn json_output_is_one_event_per_line_then_a_summary() {
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    s.filesystem(&[&src]);
    s.init();
    let out = s.ok(&["backup", "--json"]);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"step"));
    assert!(kinds.contains(&"artifact"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"summary"));
    let artifact = events.iter().find(|e| e["event"] == "artifact").unwrap();
    assert_eq!(artifact["plugin"], "filesystem");
    assert_eq!(artifact["node"], "local");
    let summary = events.last().unwrap();
    assert_eq!(summary["plugins"][0]["plugin"], "filesystem");
    assert_eq!(summary["plugins"][0]["bytes"], artifact["size"]);
    // A restore reports the bytes written back against the artifact's size, and its summary
    // says per plugin what was restored and validated.
    let out = s.ok(&["restore", "latest", "--json"]);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fed = events
        .iter()
        .find(|e| e["event"] == "bytes")
        .expect("a bytes event");
    assert_eq!(fed["total"], artifact["size"]);
    assert_eq!(fed["bytes"], artifact["size"]);
    let summary = events.last().unwrap();
    assert_eq!(summary["plugins"][0]["bytes"], artifact["size"]);
    assert_eq!(summary["plugins"][0]["nodes"][0], "local");
    let out = s.ok(&["restore", "latest"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("filesystem   on local: ")
            && text.contains("validated filesystem: 2 check(s), all passed"),
        "{text}"
    );
    // Errors come as JSON too, with the exit code.
    let out = s
        .command(&["restore", "nosuchid", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "error");
    assert_eq!(last["exit"], 3);
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("no snapshot `nosuchid`")
    );
}

#[test]
fn a_filesystem_0_1_snapshot_restores_after_the_upgrade_to_0_2_and_not_the_reverse() {
    let s = Scratch::new();
    let src = s.path("data");
    for (file, body) in [("etc/a.conf", "a=1\n"), ("srv/x.bin", "x"), ("srv/y", "y")] {
        fs::create_dir_all(src.join(file).parent().unwrap()).unwrap();
        fs::write(src.join(file), body).unwrap();
    }
    s.deployment(&format!(
        "[plugin.filesystem.settings]\npaths = [{:?}, {:?}]\n\n[plugin.filesystem.grant]\n\
         commands = [\"test -e /**\", \"tar --compare **\"]\npaths = [{:?}]\n",
        src.join("etc").display().to_string(),
        src.join("srv").display().to_string(),
        format!("{}/**", src.display())
    ));
    // The 0.1 release (one archive per node) installed over the built-in 0.2.
    let plugins = s.path("plugins");
    fs::create_dir_all(&plugins).unwrap();
    let release_0_1 = Path::new(coffer_core::registry::BUILT_PLUGINS_DIR)
        .join("coffer_plugin_filesystem_0_1.wasm");
    fs::copy(&release_0_1, plugins.join("filesystem.wasm")).unwrap();
    s.init();
    let out = s.ok(&["backup", "--json"]);
    assert_eq!(artifact_fields(&out, "name"), ["paths.tar"]);
    let old = summary(&out)["snapshot"].as_str().unwrap().to_string();

    // Upgrade to 0.2 (the built-in again); the data is damaged; the 0.1 snapshot restores,
    // whole and one path alone.
    fs::remove_file(plugins.join("filesystem.wasm")).unwrap();
    let listed = String::from_utf8_lossy(&s.ok(&["plugins"]).stdout).into_owned();
    assert!(listed.contains("filesystem   0.2.1"), "{listed}");
    let described = s.ok(&["plugins", "describe", "filesystem"]);
    assert!(
        String::from_utf8_lossy(&described.stdout)
            .contains("restores artifacts written by versions: >=0.1, <0.3"),
        "{described:?}"
    );
    fs::remove_file(src.join("etc/a.conf")).unwrap();
    fs::write(src.join("srv/y"), "changed").unwrap();
    // The other build is said once, by the restore; its validation says nothing of it.
    let out = s.ok(&["restore", &old]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("snapshot was written by filesystem 0.1")
            .count(),
        1,
        "{err}"
    );
    let out = s.ok(&["validate", &old]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("snapshot was written by"), "{err}");
    assert_eq!(fs::read_to_string(src.join("etc/a.conf")).unwrap(), "a=1\n");
    assert_eq!(fs::read_to_string(src.join("srv/y")).unwrap(), "y");
    fs::write(src.join("srv/y"), "changed").unwrap();
    let wanted = src.join("srv/y");
    s.ok(&["restore", &old, "--path", wanted.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(src.join("srv/y")).unwrap(), "y");

    // 0.2 writes one archive per path; `--path` reads only the archive that holds it.
    let out = s.ok(&["backup", "--json"]);
    let etc = format!("tree{}.tar", src.join("etc").display()).replace('/', ":");
    let srv = format!("tree{}.tar", src.join("srv").display()).replace('/', ":");
    assert_eq!(artifact_fields(&out, "name"), [etc.clone(), srv.clone()]);
    fs::write(src.join("srv/y"), "changed").unwrap();
    let out = s.ok(&["restore", "latest", "--path", wanted.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("restoring {srv}")), "{err}");
    assert!(!err.contains(&format!("restoring {etc}")), "{err}");
    assert_eq!(fs::read_to_string(src.join("srv/y")).unwrap(), "y");
    let elsewhere = s.path("elsewhere");
    let out = s.run(&["restore", "latest", "--path", elsewhere.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("none of the selected paths"));

    // Back to 0.1: it cannot read the 0.2 snapshot; refused before anything runs, naming
    // the versions.
    fs::copy(&release_0_1, plugins.join("filesystem.wasm")).unwrap();
    let described = s.ok(&["plugins", "describe", "filesystem"]);
    assert!(
        String::from_utf8_lossy(&described.stdout)
            .contains("restores artifacts written by versions: 0.1.*"),
        "{described:?}"
    );
    fs::write(src.join("srv/y"), "changed").unwrap();
    let out = s.run(&["restore", "latest"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    for part in [
        "written by filesystem 0.2.1",
        "installed filesystem 0.1.0 restores only versions `0.1.*`",
        "the 0.2.* series does",
    ] {
        assert!(err.contains(part), "no {part:?} in: {err}");
    }
    assert_eq!(fs::read_to_string(src.join("srv/y")).unwrap(), "changed");
    s.ok(&["restore", &old]);
    assert_eq!(fs::read_to_string(src.join("srv/y")).unwrap(), "y");
}

#[test]
fn the_undercloud_restore_ends_with_the_configured_reinstall_command() {
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("undercloud.conf"), "[DEFAULT]\n").unwrap();
    let marker = s.path("reinstalled");
    s.filesystem(&[&src]);
    s.init();
    s.backup(&[]);
    fs::remove_file(src.join("undercloud.conf")).unwrap();
    // Not configured: the restore runs and says how to configure it.
    let out = s.ok(&["restore", "latest", "--undercloud"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plan: restore filesystem on the undercloud node(s)"),
        "{err}"
    );
    assert!(err.contains("no reinstall command configured"), "{err}");
    assert!(src.join("undercloud.conf").exists());
    assert!(!marker.exists());

    // Configured: it runs after the restore, on the undercloud node, its output shown.
    let text = fs::read_to_string(s.path("deployment.toml")).unwrap();
    fs::write(
        s.path("deployment.toml"),
        format!(
            "{text}\n[undercloud]\nreinstall-command = [\"sh\", \"-c\", \"echo reinstalling; test -e {0} && echo done > {1}\"]\n",
            src.join("undercloud.conf").display(),
            marker.display()
        ),
    )
    .unwrap();
    fs::remove_file(src.join("undercloud.conf")).unwrap();
    let out = s.ok(&["restore", "latest", "--undercloud"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("then run `sh -c echo reinstalling"), "{err}");
    assert!(
        err.contains("reinstalling") && err.contains("[reinstall] local: done"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&marker).unwrap(), "done\n");

    // A failing reinstall command is an error that says the restore itself completed.
    s.edit_deployment("echo reinstalling;", "exit 3;");
    failed_with(
        &s.run(&["restore", "latest", "--undercloud"]),
        1,
        &["ended with exit code 3", "restore itself completed"],
    );
}

/// Every file of the repository with its hash: a dry run must leave it as it was.
fn repository_state(s: &Scratch) -> BTreeMap<PathBuf, String> {
    walkdir(&s.repo())
        .into_iter()
        .map(|p| (p.clone(), hash_file(&p)))
        .collect()
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files.extend(walkdir(&p));
        } else {
            files.push(p);
        }
    }
    files
}

#[test]
fn a_dry_run_changes_and_stores_nothing_and_lists_what_the_run_then_does() {
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub/a"), b"first").unwrap();
    fs::write(src.join("big"), noise(7, 256 << 10)).unwrap();
    s.filesystem(&[&src, &s.path("absent")]);
    s.init();
    let repo = repository_state(&s);

    // Backup: the read-only probes run, the archive is only listed; nothing is stored.
    let plan = s.ok(&["backup", "--dry-run", "--json"]);
    let p = summary(&plan);
    assert_eq!(p["operation"], "backup");
    assert_eq!(p["steps"][0]["plugin"], "filesystem");
    assert_eq!(p["steps"][0]["called"], true);
    let reads = planned(&plan, &["reads"]);
    assert!(
        reads
            .iter()
            .any(|c| c.contains("test -e") && c.contains("absent")),
        "{reads:?}"
    );
    let stores = planned(&plan, &["stores"]);
    assert_eq!(
        stores.len(),
        2,
        "one archive and its xattr listing, the absent path skipped: {stores:?}"
    );
    assert!(stores[0].starts_with("local$ tar --create"), "{stores:?}");
    assert!(stores[1].contains("getfattr"), "{stores:?}");
    assert_eq!(repository_state(&s), repo, "the repository is untouched");
    assert_eq!(s.snapshot_count(), 0);
    let text = String::from_utf8_lossy(&s.ok(&["backup", "--dry-run"]).stdout).to_string();
    assert!(
        text.contains("nothing was changed and nothing was stored")
            && text.contains("would store")
            && text.contains("reads (ran)"),
        "{text}"
    );
    // The real backup runs exactly what the plan listed.
    let real = s.ok(&["backup", "--json"]);
    let all = ["reads", "changes", "stores"];
    assert_eq!(commands_run(&real, &all), planned(&plan, &all));
    assert_eq!(commands_run(&real, &["stores"]), stores);

    // Restore: the file changed since; the plan changes nothing and verifies the artifact.
    fs::write(src.join("sub/a"), b"changed").unwrap();
    fs::write(src.join("new"), b"new").unwrap();
    let before = record_tree(&src);
    let repo = repository_state(&s);
    let plan = s.ok(&["restore", "latest", "--dry-run", "--json"]);
    assert_same_tree(&before, &record_tree(&src));
    assert_eq!(repository_state(&s), repo);
    let changes = planned(&plan, &["changes"]);
    assert!(
        changes.iter().any(|c| c.contains("tar --extract")),
        "{changes:?}"
    );
    assert!(
        summary(&plan)["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["note"].as_str().is_some_and(|n| n.contains("verified"))),
        "the artifact is read and verified"
    );
    let real = s.ok(&["restore", "latest", "--json"]);
    assert_eq!(commands_run(&real, &["changes", "stores"]), changes);
    assert_eq!(fs::read(src.join("sub/a")).unwrap(), b"first");

    // A damaged repository fails the dry run, as it would fail the restore, before anything.
    fs::write(src.join("sub/a"), b"changed again").unwrap();
    s.corrupt_largest_pack();
    let out = s.run(&["restore", "latest", "--dry-run"]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(fs::read(src.join("sub/a")).unwrap(), b"changed again");
}

/// Retention: restic's rules applied to Coffer snapshots, each forgotten with its artifacts;
/// a dry run changes nothing; prune frees the data; what is kept still restores; `[retention]`
/// applies after every backup; a policy that cannot be applied is refused with its name.
#[test]
fn forget_keeps_what_the_policy_says_and_prune_frees_the_rest() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    s.filesystem(&[&data]);
    s.init();
    let mut ids = Vec::new();
    for i in 0..4u64 {
        fs::write(data.join("f"), noise(100 + i, 2 << 20)).unwrap();
        ids.push(
            summary(&s.ok(&["backup", "--json"]))["snapshot"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let plan = summary(&s.ok(&["forget", "--keep-last", "2", "--dry-run", "--json"]));
    assert_eq!(
        (&plan["forgotten"], &plan["dry_run"]),
        (&2.into(), &true.into())
    );
    let kept: Vec<&str> = plan["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == true)
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, [ids[3].as_str(), ids[2].as_str()], "{plan}");
    assert_eq!(s.snapshot_count(), 4);

    let done = summary(&s.ok(&["forget", "--keep-last", "2", "--prune", "--json"]));
    assert_eq!(
        (
            &done["forgotten"],
            &done["forgotten_artifacts"],
            &done["orphans"]
        ),
        // Each run: one archive and its xattr listing.
        (&2.into(), &4.into(), &0.into()),
        "{done}"
    );
    let (before, after) = (
        done["pruned"]["bytes_before"].as_u64().unwrap(),
        done["pruned"]["bytes_after"].as_u64().unwrap(),
    );
    assert!(after + (3 << 20) < before, "{done}");
    assert_eq!(s.snapshot_count(), 2);
    s.ok(&["check", "--read-data"]);
    fs::remove_file(data.join("f")).unwrap();
    s.ok(&["restore", &ids[2]]);
    assert_eq!(fs::read(data.join("f")).unwrap(), noise(102, 2 << 20));

    // In the deployment file, it applies after every backup.
    let path = s.path("deployment.toml");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{text}\n[retention]\nkeep-last = 1\n")).unwrap();
    let out = summary(&s.ok(&["backup", "--json"]));
    assert_eq!(out["retention"]["forgotten"], 2, "{out}");
    assert_eq!(s.snapshot_count(), 1);

    let out = s.run(&["forget", "--keep-within", "soon"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("keep-within `soon` is not a duration"),
        "{err}"
    );
    fs::write(&path, format!("{text}\n[retention]\nprune = true\n")).unwrap();
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("retention") && err.contains("no rule"),
        "{err}"
    );
    fs::write(&path, &text).unwrap();
    assert_eq!(s.snapshot_count(), 1, "the refused backup wrote nothing");
}

/// `coffer status` for a monitoring check: fresh backups exit 0, one older than `--max-age`
/// exits 9 saying STALE, an enabled plugin never backed up is listed as never.
#[test]
fn status_says_how_old_each_backup_is() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), b"x").unwrap();
    s.filesystem(&[&data]);
    s.init();
    s.ok(&["backup"]);
    let fresh = summary(&s.ok(&["status", "--json"]));
    assert_eq!(fresh["stale"], 0, "{fresh}");
    assert_eq!(fresh["entries"][0]["plugin"], "filesystem");
    std::thread::sleep(Duration::from_millis(1500));
    let out = s.run(&["status", "--max-age", "1s"]);
    assert_eq!(out.status.code(), Some(9));
    assert!(String::from_utf8_lossy(&out.stdout).contains("STALE"));
    // Redis enabled but never backed up.
    s.edit_deployment(
        "[plugin.filesystem.settings]",
        "[plugin.redis]\nroles = [\"undercloud\"]\n\n[plugin.filesystem.settings]",
    );
    let out = s.run(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(9));
    let never = summary(&out);
    assert!(
        never["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["plugin"] == "redis" && e["age_seconds"].is_null() && e["stale"] == true),
        "{never}"
    );
}

/// The writer lock: a second writer fails at once and says how to wait; with `--retry-lock`
/// it waits for the first and then succeeds, or says how long it waited.
#[test]
fn a_second_writer_waits_with_retry_lock() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), b"one").unwrap();
    s.filesystem(&[&data]);
    s.init();
    // Another run, as far as the repository can tell: its lock file held (flock(2)).
    let holder = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(s.repo().join("coffer.lock"))
        .unwrap();
    holder.lock().unwrap();
    failed_with(
        &s.run(&["backup"]),
        3,
        &["in use by another coffer run", "--retry-lock"],
    );
    failed_with(
        &s.run(&["forget", "--keep-last", "1"]),
        3,
        &["in use by another coffer run"],
    );
    failed_with(
        &s.run(&["backup", "--retry-lock", "2s"]),
        3,
        &["still in use by another coffer run after waiting 2s"],
    );
    failed_with(
        &s.run(&["backup", "--retry-lock", "soon"]),
        2,
        &["`soon` is not a duration"],
    );
    assert_eq!(s.snapshot_count(), 0);

    // A backup that waits: it says so, and goes on once the other run is gone.
    let mut waiting = s
        .command(&["backup", "--retry-lock", "10m", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(waiting.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(
            std::io::BufRead::read_line(&mut stderr, &mut line).unwrap(),
            0,
            "the waiting backup ended without saying it waits"
        );
        if line.contains("waiting up to 600s") {
            break;
        }
    }
    assert!(waiting.try_wait().unwrap().is_none(), "it waits: {line}");
    drop(holder);
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(s.snapshot_count(), 1);
}

/// A repository, its lock and the state directory are private (directories 0700, files 0600,
/// as restic makes them): the key files are the password-protected master key. A password
/// file others can read is warned about.
#[test]
fn a_new_repository_is_private() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), b"secret").unwrap();
    s.filesystem(&[&data]);
    s.init();
    s.ok(&["backup"]);
    s.ok(&["forget", "--keep-last", "1", "--prune"]);
    assert_private(&s.repo());
    let state = s.path("state");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    for e in fs::read_dir(&state).unwrap() {
        let p = e.unwrap().path();
        assert!(mode(&p) == 0o600 || mode(&p) == 0o700, "{}", p.display());
    }

    let password = s.path("password");
    fs::set_permissions(&password, fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.ok(&["snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("can be read by other users") && err.contains("chmod 600"),
        "{err}"
    );
    // A repository made before Coffer kept them private is named, with the fix.
    fs::set_permissions(s.repo(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.ok(&["snapshots"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod -R go-rwx"), "{err}");
}

/// `rclone serve restic` on a free loopback port, serving `dir`, until dropped.
struct RestServer(std::process::Child);

impl RestServer {
    /// HTTP authentication as `coffer` with `password` (given through rclone's environment,
    /// so that no argv holds it), and `extra` flags.
    fn start(dir: &Path, port: u16, password: &str, extra: &[&str]) -> Self {
        let child = std::process::Command::new("rclone")
            .args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--user", "coffer"])
            .env("RCLONE_PASS", password)
            .args(extra)
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rclone is installed (scripts/test.sh installs it)");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed().as_secs() < 30, "rclone never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self(child)
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A repository on a REST server (restic's protocol; a real `rclone serve restic` with HTTP
/// authentication): init, backup, check --read-data, a restore byte for byte, forget + prune,
/// the server's password in no argv and no output; served append-only, a backup still works
/// and forget is refused saying why, deleting nothing; a wrong password and a server that is
/// down are each exit 3, said so.
#[test]
fn a_repository_on_a_rest_server() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), noise(7, 1 << 20)).unwrap();
    s.filesystem(&[&data]);
    let served = s.path("served");
    fs::create_dir_all(&served).unwrap();
    let port = free_port();
    let secret = "h77p-s3cret";
    let server = RestServer::start(&served, port, secret, &[]);
    s.edit_deployment(
        &format!("path = \"{}\"", s.repo().display()),
        &format!("path = \"rest:http://127.0.0.1:{port}/overcloud\""),
    );
    let with_password = |args: &[&str]| {
        let mut c = s.command(args);
        c.env("COFFER_REST_PASSWORD", secret);
        c
    };
    let ok = |args: &[&str]| {
        let out = run_watching_argv(with_password(args), secret);
        assert!(
            out.status.success(),
            "coffer {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    ok(&["init"]);
    assert!(served.join("overcloud/config").exists());
    assert!(!s.repo().exists());
    let first = summary(&ok(&["backup", "--json", "--verbose"]))["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(data.join("f"), noise(8, 1 << 20)).unwrap();
    ok(&["backup"]);
    ok(&["check", "--read-data"]);
    fs::remove_file(data.join("f")).unwrap();
    ok(&["restore", &first]);
    assert_eq!(fs::read(data.join("f")).unwrap(), noise(7, 1 << 20));
    let done = summary(&ok(&["forget", "--keep-last", "1", "--prune", "--json"]));
    assert_eq!(done["forgotten"], 1, "{done}");
    let count = || {
        String::from_utf8(ok(&["snapshots", "--json"]).stdout)
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(count(), 1);

    // Without the password, or with a wrong one: refused by the server, said, never shown.
    let out = s.command(&["snapshots"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let mut wrong = s.command(&["snapshots"]);
    wrong.env("COFFER_REST_PASSWORD", "not-it");
    let out = wrong.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("401") && !err.contains("not-it"), "{err}");

    // Served append-only: backups go on, forget is refused and deletes nothing.
    drop(server);
    let server = RestServer::start(&served, port, secret, &["--append-only"]);
    ok(&["backup"]);
    let files = |d: &str| {
        fs::read_dir(served.join("overcloud").join(d))
            .unwrap()
            .count()
    };
    let snapshots_before = files("snapshots");
    let out = with_password(&["forget", "--keep-last", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("refuses to delete anything") && err.contains("append-only"),
        "{err}"
    );
    assert_eq!(files("snapshots"), snapshots_before, "nothing deleted");
    assert_eq!(count(), 2);

    // The server down: said so, naming the repository.
    drop(server);
    let out = with_password(&["snapshots"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "the REST server of rest:http://127.0.0.1:{port}/overcloud"
        )) && err.contains("does not answer"),
        "{err}"
    );
}

/// GET `path` from a server on loopback `port`; the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::Read as _;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or(text)
}

/// `[metrics] textfile`: after every run, metrics a real `prometheus-node-exporter` serves
/// from its textfile collector — the last good backup per plugin and node, the snapshot count,
/// per command the last run's outcome (a failed validation is 0, then a good one 1), and per
/// plugin its last drill.
#[test]
fn metrics_reach_prometheus_through_the_node_exporter() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), noise(3, 1 << 16)).unwrap();
    s.filesystem(&[&data]);
    let dir = s.path("textfile");
    fs::create_dir_all(&dir).unwrap();
    let text = fs::read_to_string(s.path("deployment.toml")).unwrap();
    fs::write(
        s.path("deployment.toml"),
        format!(
            "{text}\n[metrics]\ntextfile = \"{}\"\n",
            dir.join("coffer.prom").display()
        ),
    )
    .unwrap();
    s.init();
    s.ok(&["backup"]);
    fs::write(data.join("f"), b"changed").unwrap();
    assert_eq!(s.run(&["validate", "latest"]).status.code(), Some(5));

    let port = free_port();
    let mut exporter = std::process::Command::new("prometheus-node-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--collector.textfile.directory={}", dir.display()))
        .args(["--collector.disable-defaults", "--collector.textfile"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus-node-exporter is installed (scripts/test.sh installs it)");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed().as_secs() < 30,
            "the exporter never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let scrape = || http_get(port, "/metrics");
    let metrics = scrape();
    let has = |m: &str, line: &str| m.lines().any(|l| l == line);
    assert!(has(&metrics, "node_textfile_scrape_error 0"), "{metrics}");
    assert!(
        has(&metrics, "coffer_snapshots{deployment=\"test\"} 1"),
        "{metrics}"
    );
    assert!(
        has(
            &metrics,
            "coffer_last_run_success{command=\"backup\",deployment=\"test\"} 1"
        ) && has(
            &metrics,
            "coffer_last_run_success{command=\"validate\",deployment=\"test\"} 0"
        ) && has(
            &metrics,
            "coffer_last_run_exit_code{command=\"validate\",deployment=\"test\"} 5"
        ),
        "{metrics}"
    );
    let success = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "coffer_last_success_timestamp_seconds{deployment=\"test\",node=\"local\",plugin=\"filesystem\"}",
            )
        })
        .unwrap_or_else(|| panic!("{metrics}"));
    let when: f64 = success.rsplit(' ').next().unwrap().parse().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - when).abs() < 3600.0, "{success}");

    // The next runs rewrite the file: restored, the validation now passes.
    s.ok(&["restore", "latest"]);
    s.ok(&["validate", "latest"]);
    assert!(has(
        &scrape(),
        "coffer_last_run_success{command=\"validate\",deployment=\"test\"} 1"
    ));
    // A drill's result, per plugin.
    let scratch = s.path("scratch");
    fs::create_dir_all(&scratch).unwrap();
    s.ok(&["drill", "--scratch", scratch.to_str().unwrap()]);
    let metrics = scrape();
    assert!(
        has(
            &metrics,
            "coffer_drill_passed{deployment=\"test\",plugin=\"filesystem\"} 1"
        ) && metrics.lines().any(|l| l.starts_with(
            "coffer_drill_last_timestamp_seconds{deployment=\"test\",plugin=\"filesystem\"}"
        )),
        "{metrics}"
    );
    let _ = exporter.kill();
    let _ = exporter.wait();
}

/// `coffer copy`, the 3-2-1 rule: a second repository with its own password gets the
/// snapshots it lacks, each verified; a second copy copies nothing and a new backup only
/// itself; the copies keep their runs and times, pass `check --read-data`, and restore and
/// validate on their own once the first repository is gone. A copy out of a damaged repository
/// fails naming the snapshot and leaves no half copy; a REST server is a target too.
#[test]
fn snapshots_copied_to_a_second_repository_restore_on_their_own() {
    let s = Scratch::new();
    let data = s.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), noise(21, 1 << 20)).unwrap();
    s.filesystem(&[&data]);
    s.init();
    s.backup(&[]);
    fs::write(data.join("f"), noise(22, 1 << 20)).unwrap();
    s.backup(&[]);
    let offsite = s.path("offsite");
    let password = s.path("offsite-password");
    fs::write(&password, "an0ther-pass\n").unwrap();
    fs::set_permissions(&password, fs::Permissions::from_mode(0o600)).unwrap();
    let (off, pw) = (offsite.to_str().unwrap(), password.to_str().unwrap());
    s.ok(&["--repo", off, "--password-file", pw, "init"]);
    let copy = |to: &str| {
        let out = s.ok(&["copy", "--to", to, "--to-password-file", pw, "--json"]);
        let v = summary(&out);
        let ids = |k: &str| -> Vec<String> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    c.as_str()
                        .map_or_else(|| c["from"].as_str().unwrap().to_string(), String::from)
                })
                .collect()
        };
        (ids("copied"), ids("present"))
    };
    let (copied, present) = copy(off);
    assert_eq!((copied.len(), present.len()), (2, 0));
    assert_eq!(copy(off), (vec![], copied.clone()), "nothing copied twice");
    fs::write(data.join("f"), noise(23, 1 << 20)).unwrap();
    let third = s.backup(&[]);
    assert_eq!(copy(off).0, [third]);

    // The same runs at the same times, readable to the last byte.
    let runs = |extra: &[&str]| -> Vec<(String, String)> {
        let mut args = extra.to_vec();
        args.extend(["snapshots", "--json"]);
        String::from_utf8(s.ok(&args).stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["time"].to_string(), v["manifest"]["run_id"].to_string())
            })
            .collect()
    };
    let at_target = ["--repo", off, "--password-file", pw];
    assert_eq!(runs(&at_target), runs(&[]));
    let mut check = at_target.to_vec();
    check.extend(["check", "--read-data"]);
    s.ok(&check);

    // A damaged source: the copy fails naming the snapshot; the target keeps whole snapshots
    // only, and every one of them reads back.
    let second_site = s.path("second-site");
    let second = second_site.to_str().unwrap();
    s.ok(&["--repo", second, "--password-file", pw, "init"]);
    s.corrupt_largest_pack();
    let out = s.run(&["copy", "--to", second, "--to-password-file", pw]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("copying snapshot"), "{err}");
    let at_second = ["--repo", second, "--password-file", pw];
    assert!(runs(&at_second).len() < 3);
    let mut check = at_second.to_vec();
    check.extend(["check", "--read-data"]);
    s.ok(&check);

    // The first repository gone: the copy restores and validates on its own.
    fs::remove_dir_all(s.repo()).unwrap();
    fs::remove_file(data.join("f")).unwrap();
    let mut restore = at_target.to_vec();
    restore.extend(["restore", "latest"]);
    s.ok(&restore);
    assert_eq!(fs::read(data.join("f")).unwrap(), noise(23, 1 << 20));

    // Onto a REST server, its credentials from the target's own variables.
    let served = s.path("served");
    fs::create_dir_all(&served).unwrap();
    let port = free_port();
    let _server = RestServer::start(&served, port, "r3st-pw", &[]);
    let url = format!("rest:http://127.0.0.1:{port}/offsite");
    let rest = |args: &[&str], var: &str| {
        let mut c = s.command(args);
        c.env(var, "r3st-pw");
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "coffer {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    rest(
        &["--repo", &url, "--password-file", pw, "init"],
        "COFFER_REST_PASSWORD",
    );
    let out = rest(
        &[
            "--repo",
            off,
            "--password-file",
            pw,
            "copy",
            "--to",
            &url,
            "--json",
        ],
        "COFFER_TO_REST_PASSWORD",
    );
    assert_eq!(summary(&out)["copied"].as_array().unwrap().len(), 3);
}
