//! Bad input gets a clear, specific error, the right exit code, and loses nothing.

mod support;

use std::fs;

use support::*;

fn fails(s: &Scratch, args: &[&str], code: i32) -> String {
    let out = s.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "coffer {args:?}:\n{stderr}");
    stderr
}

fn small_tree(s: &Scratch) -> std::path::PathBuf {
    let src = s.path("data");
    fs::create_dir_all(&src).unwrap();
    for i in 0..4u64 {
        fs::write(src.join(format!("f{i}")), noise(i, 3 << 20)).unwrap();
    }
    s.filesystem(&[&src]);
    src
}

#[test]
fn a_missing_deployment_file_is_named() {
    let s = Scratch::new();
    let err = fails(&s, &["backup"], 2);
    assert!(err.contains("cannot read deployment file"), "{err}");
    assert!(err.contains("deployment.toml"), "{err}");
}

#[test]
fn a_malformed_deployment_file_names_line_and_field() {
    let s = Scratch::new();
    fs::write(
        s.path("deployment.toml"),
        "[[node]]\nname = \"a\"\naddress = \"local\"\n\n[[node]]\nname = \"a\"\naddress = \"local\"\nrols = []\n",
    )
    .unwrap();
    let err = fails(&s, &["backup"], 2);
    assert!(err.contains("line 8"), "{err}");
    assert!(err.contains("unknown field `rols`"), "{err}");
}

#[test]
fn an_unknown_plugin_or_setting_is_named_with_its_line() {
    let s = Scratch::new();
    s.deployment("[plugin.nosuch]\n\n[plugin.filesystem.settings]\npath = \"/etc\"\n");
    let err = fails(&s, &["backup"], 2);
    assert!(
        err.contains("line 12: plugin `nosuch` is not installed"),
        "{err}"
    );
    assert!(
        err.contains("line 15: plugin `filesystem` has no setting `path`"),
        "{err}"
    );
}

#[test]
fn a_missing_repository_says_to_init() {
    let s = Scratch::new();
    small_tree(&s);
    let err = fails(&s, &["backup"], 3);
    assert!(err.contains("coffer init"), "{err}");
}

#[test]
fn a_wrong_password_is_reported_and_never_printed() {
    let s = Scratch::new();
    small_tree(&s);
    s.init();
    let err = fails(&s, &["init"], 3);
    assert!(err.contains("already exists"), "{err}");
    let out = s
        .command(&["snapshots"])
        .env("COFFER_PASSWORD", "not the password")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("wrong password"), "{err}");
    assert!(!err.contains("not the password"));
    // A verbose backup never shows the password either.
    let out = s.ok(&["backup", "--verbose"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("correct horse"), "password in output:\n{all}");
}

#[test]
fn a_corrupt_pack_is_found_by_check_and_refused_by_restore() {
    let s = Scratch::new();
    let src = small_tree(&s);
    s.init();
    s.backup(&[]);
    s.ok(&["check", "--read-data"]);
    let pack = s.corrupt_largest_pack();

    let out = s.run(&["check", "--read-data"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{text}");
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(
        text.contains(&name[..8]),
        "check does not name the pack {name}:\n{text}"
    );

    let out_dir = s.path("out");
    let out = s.run(&["restore", "latest", "--target", out_dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restore of corrupt data succeeded");
    assert!(
        err.contains("repository") || err.contains("corrupt"),
        "restore error does not say the repository is damaged:\n{err}"
    );
    // The source was never touched.
    assert_eq!(fs::read(src.join("f1")).unwrap(), noise(1, 3 << 20));
}

/// A deployment backing up a 320 MiB tree, initialised; returns the tree.
fn big_tree(s: &Scratch, seed: u64) -> std::path::PathBuf {
    let src = s.path("data");
    fs::create_dir_all(&src).unwrap();
    for i in 0..40u64 {
        fs::write(src.join(format!("f{i:02}")), noise(seed + i, 8 << 20)).unwrap();
    }
    s.filesystem(&[&src]);
    s.init();
    src
}

#[test]
fn a_backup_killed_with_sigkill_leaves_no_snapshot_and_the_next_one_works() {
    let s = Scratch::new();
    let src = big_tree(&s, 500);
    let mut child = s.backup_in_flight();
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(
        s.snapshot_count(),
        0,
        "a killed backup left a snapshot that looks complete"
    );
    let out = s.ok(&["backup", "--json"]);
    // The archive and its xattr listing.
    assert_eq!(summary(&out)["artifacts"].as_array().unwrap().len(), 2);
    assert_eq!(s.snapshot_count(), 1);
    s.ok(&["check", "--read-data"]);
    let restored = s.path("out");
    s.ok(&["restore", "latest", "--target", restored.to_str().unwrap()]);
    assert_eq!(
        hash_file(&restored.join(src.strip_prefix("/").unwrap()).join("f39")),
        hash_file(&src.join("f39"))
    );
}

#[test]
fn a_full_disk_fails_the_backup_cleanly_and_keeps_earlier_snapshots() {
    let s = Scratch::new();
    // The repository lives on a small filesystem that the second backup overflows.
    let disk = Tmpfs::mount_sized(&s.path("small-disk"), 24);
    let src = s.path("data");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("small"), noise(1, 2 << 20)).unwrap();
    let text = fs::read_to_string(s.filesystem(&[&src])).unwrap();
    let repo = disk.path.join("repo");
    fs::write(
        s.path("deployment.toml"),
        text.replace(&s.repo().display().to_string(), &repo.display().to_string()),
    )
    .unwrap();
    s.init();
    s.backup(&[]);
    fs::write(src.join("big"), noise(2, 48 << 20)).unwrap();
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "backup onto a full disk succeeded");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains("plugin `filesystem`") && err.contains("local"),
        "{err}"
    );
    // The earlier snapshot is intact and is still the only one.
    assert_eq!(s.snapshot_count(), 1);
    fs::remove_file(src.join("big")).unwrap();
    let restored = s.path("out");
    s.ok(&["restore", "latest", "--target", restored.to_str().unwrap()]);
    assert_eq!(
        fs::read(restored.join(src.strip_prefix("/").unwrap()).join("small")).unwrap(),
        noise(1, 2 << 20)
    );
}

#[test]
fn ctrl_c_mid_backup_exits_130_and_keeps_nothing() {
    let s = Scratch::new();
    big_tree(&s, 900);
    let child = s.backup_in_flight();
    sh(&format!("kill -INT {}", child.id()));
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(s.snapshot_count(), 0);
    // The artifact being written when Ctrl-C came is removed by the next backup at the latest.
    s.ok(&["backup"]);
    assert_eq!(s.snapshot_count(), 1);
    assert_eq!(
        s.raw_snapshot_files(),
        3,
        "two artifact snapshots (the archive, its xattr listing) and one Coffer snapshot"
    );
}

#[test]
fn every_run_is_recorded_with_its_outcome() {
    let s = Scratch::new();
    let src = small_tree(&s);
    s.init();
    s.backup(&[]);
    fs::write(src.join("f1"), b"changed").unwrap();
    let out = s.run(&["validate", "latest"]);
    assert_eq!(out.status.code(), Some(5));
    let out = s.run(&["restore", "no-such-snapshot"]);
    assert_eq!(out.status.code(), Some(3));
    s.ok(&["backup", "--dry-run"]);
    let out = s.ok(&["runs", "--json"]);
    let runs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| {
            (
                r["command"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("backup", "ok"),
            ("validate", "validation failed"),
            ("restore", "failed"),
            ("backup", "planned (dry run)")
        ]
    );
    assert_eq!(
        (&runs[0]["dry_run"], &runs[3]["dry_run"]),
        (&false.into(), &true.into())
    );
    assert!(
        runs[2]["error"]
            .as_str()
            .unwrap()
            .contains("no-such-snapshot")
    );
    let text = String::from_utf8_lossy(&s.ok(&["runs"]).stdout).to_string();
    assert_eq!(text.lines().count(), 4, "{text}");
}

/// `[notify]`: the run's record goes to the command's stdin after a failed run (every run with
/// `always`); a notify command that fails is said, and does not change the run's exit code; an
/// empty one is a file error naming the field.
#[test]
fn a_failed_run_is_told_to_the_notify_command() {
    let s = Scratch::new();
    let src = small_tree(&s);
    let told = s.path("told.jsonl");
    let notify = |extra: &str| {
        let text = fs::read_to_string(s.path("deployment.toml")).unwrap();
        let base = text.split("\n[notify]").next().unwrap().to_string();
        fs::write(
            s.path("deployment.toml"),
            format!(
                "{base}\n[notify]\ncommand = [\"sh\", \"-c\", \"cat >> {}\"]\n{extra}",
                told.display()
            ),
        )
        .unwrap();
    };
    notify("");
    s.init();
    s.backup(&[]);
    assert!(!told.exists(), "a good run is not told without always");
    fs::write(src.join("f1"), b"changed").unwrap();
    assert_eq!(s.run(&["validate", "latest"]).status.code(), Some(5));
    let lines = || -> Vec<serde_json::Value> {
        fs::read_to_string(&told)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let first = &lines()[0];
    assert_eq!(
        (&first["command"], &first["outcome"], &first["exit"]),
        (&"validate".into(), &"validation failed".into(), &5.into())
    );
    notify("always = true\n");
    s.backup(&[]);
    assert_eq!(lines().len(), 2);
    assert_eq!(lines()[1]["outcome"], "ok");

    // A notify command that fails: said, and the run still ends as it did.
    let text = fs::read_to_string(s.path("deployment.toml")).unwrap();
    fs::write(
        s.path("deployment.toml"),
        text.replace("command = [\"sh\", \"-c\"", "command = [\"false\", \"-c\""),
    )
    .unwrap();
    let out = s.ok(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[notify] command `false` failed"), "{err}");
    fs::write(
        s.path("deployment.toml"),
        text.split("\n[notify]").next().unwrap().to_string() + "\n[notify]\ncommand = []\n",
    )
    .unwrap();
    failed_with(&s.run(&["backup"]), 2, &["notify.command"]);
}

/// `coffer completions bash` is a script bash loads, completing coffer; `coffer man` is a
/// roff page for every subcommand.
#[test]
fn completions_load_in_bash_and_the_manual_renders() {
    let s = Scratch::new();
    let script = s.path("coffer.bash");
    fs::write(&script, s.ok(&["completions", "bash"]).stdout).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p coffer", script.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("-F _coffer coffer"),
        "{out:?}"
    );
    let page = String::from_utf8(s.ok(&["man"]).stdout).unwrap();
    for title in [".TH coffer 1", ".TH coffer-backup 1", ".TH coffer-forget 1"] {
        assert!(page.contains(title), "no {title}");
    }
}

/// `coffer schedule`: the units it writes pass `systemd-analyze verify`, the service's
/// `ExecStart` is a working backup of this deployment (run here as systemd would), `list`
/// shows them, `remove` deletes them; a cron line for machines without systemd; a calendar
/// systemd cannot read is refused before anything is written.
#[test]
fn schedules_are_units_systemd_accepts_and_their_command_backs_up() {
    let s = Scratch::new();
    small_tree(&s);
    s.init();
    let units = s.path("units");
    let dir = units.to_str().unwrap();
    let out = s.ok(&[
        "-c",
        s.path("deployment.toml").to_str().unwrap(),
        "schedule",
        "install",
        "nightly",
        "--on-calendar",
        "*-*-* 02:00:00",
        "--dir",
        dir,
        "--",
        "backup",
        "--undercloud",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("systemctl enable --now coffer-nightly.timer")
    );
    let (service, timer) = (
        units.join("coffer-nightly.service"),
        units.join("coffer-nightly.timer"),
    );
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args([&timer, &service])
        .output()
        .expect("systemd-analyze (Debian's systemd) is installed");
    assert!(verify.status.success(), "{verify:?}");
    let text = fs::read_to_string(&timer).unwrap();
    assert!(
        text.contains("Persistent=true") && text.contains("RandomizedDelaySec=30m"),
        "{text}"
    );
    // What the service runs is a real backup of this deployment.
    let exec = fs::read_to_string(&service)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=").map(String::from))
        .unwrap();
    assert!(!exec.contains("correct horse"), "no password in a unit");
    let argv: Vec<&str> = exec.split(' ').collect();
    let ran = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .env("COFFER_STATE_DIR", s.path("state"))
        .env("COFFER_CACHE_DIR", scratch_root().join("component-cache"))
        .output()
        .unwrap();
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(summary(&ran)["event"], "summary");
    assert_eq!(s.snapshot_count(), 1);

    let listed = String::from_utf8(s.ok(&["schedule", "list", "--dir", dir]).stdout).unwrap();
    assert!(
        listed.contains("nightly") && listed.contains("*-*-* 02:00:00"),
        "{listed}"
    );
    s.ok(&["schedule", "remove", "nightly", "--dir", dir]);
    assert!(!service.exists() && !timer.exists());
    failed_with(
        &s.run(&["schedule", "remove", "nightly", "--dir", dir]),
        2,
        &["no schedule"],
    );

    // Without systemd: a cron line, never two runs at once.
    s.ok(&[
        "-c",
        s.path("deployment.toml").to_str().unwrap(),
        "schedule",
        "install",
        "retention",
        "--cron",
        "30 3 * * 0",
        "--dir",
        dir,
        "--",
        "forget",
        "--keep-daily",
        "14",
        "--prune",
    ]);
    let cron = fs::read_to_string(units.join("coffer-retention")).unwrap();
    assert!(
        cron.contains("30 3 * * 0 root flock -n /run/lock/coffer-retention.lock ")
            && cron.contains(" forget --keep-daily 14 --prune >> /var/log/coffer-retention.log"),
        "{cron}"
    );
    failed_with(
        &s.run(&[
            "-c",
            s.path("deployment.toml").to_str().unwrap(),
            "schedule",
            "install",
            "bad",
            "--on-calendar",
            "someday",
            "--dir",
            dir,
            "--",
            "backup",
        ]),
        2,
        &["`someday` is not a systemd calendar"],
    );
    assert!(!units.join("coffer-bad.timer").exists());
}

/// A snapshot crafted by a hostile node: its `tar` hands over an archive of its own making
/// instead of the files it was asked for — a `..` member, an absolute name, symlinks out of
/// the directory (absolute and relative) with a file written through each, a hard link to a
/// file outside. Kept as a tree, the backup refuses it (the members are not the ones listed)
/// and keeps nothing; kept as a tar stream (`COFFER_PATHS_LAYOUT=blob`), the snapshot is made,
/// and its restore under `--target` writes nothing outside that directory: the extraction
/// refuses each of those members, says so, and the restore fails (exit 4).
#[test]
fn a_crafted_snapshot_writes_nothing_outside_the_restore_target() {
    let s = Scratch::new();
    let src = s.path("data");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    let outside = s.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim"), b"victim\n").unwrap();
    let crafted = s.path("crafted.tar");
    let o = outside.display();
    sh(&format!(
        "python3 - <<'PY'
import io, tarfile
def file(t, name, data=b'pwned\\n'):
    i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
def link(t, name, target, kind=tarfile.SYMTYPE):
    i = tarfile.TarInfo(name); i.type = kind; i.linkname = target; t.addfile(i)
with tarfile.open('{}', 'w', format=tarfile.PAX_FORMAT) as t:
    file(t, '../../../../../../../../{o}/dotdot')
    file(t, '{o}/absolute')
    link(t, 'evil', '{o}')
    file(t, 'evil/through-an-absolute-symlink')
    link(t, 'rel', '../../../../../../../../{o}')
    file(t, 'rel/through-a-relative-symlink')
    link(t, 'hard', '{o}/victim', tarfile.LNKTYPE)
    file(t, 'hard', b'overwritten\\n')
    file(t, 'fine', b'fine\\n')
PY",
        crafted.display()
    ));
    // The node's `tar` creates that archive whatever it is asked; it extracts as GNU tar.
    let bin = s.path("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(
        bin.join("tar"),
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --create ] && exec cat {}; done\nexec /usr/bin/tar \"$@\"\n",
            crafted.display()
        ),
    )
    .unwrap();
    sh(&format!("chmod 755 {}/tar", bin.display()));
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    s.filesystem(&[&src]);
    s.init();
    let outside_before = record_tree(&outside);

    // As a tree: the members are not the listed files.
    let out = s.command(&["backup"]).env("PATH", &path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("filesystem") && err.contains("on local"),
        "{err}"
    );
    assert!(
        err.contains("tar gave ../"),
        "the backup does not say what tar sent:\n{err}"
    );
    assert_eq!(s.snapshot_count(), 0, "a refused tree left a snapshot");

    // As a tar stream: kept as the node sent it.
    let out = s
        .command(&["backup"])
        .env("PATH", &path)
        .env("COFFER_PATHS_LAYOUT", "blob")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = s.path("target");
    let err = fails(
        &s,
        &["restore", "latest", "--target", target.to_str().unwrap()],
        4,
    );
    for said in [
        "Member name contains '..'",
        "Removing leading `/'",
        "through-an-absolute-symlink: Cannot open",
        "through-a-relative-symlink: Cannot open",
    ] {
        assert!(
            err.contains(said),
            "the restore does not say {said:?}:\n{err}"
        );
    }
    assert_same_tree(&outside_before, &record_tree(&outside));
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"victim\n");
    // What is inside stays inside: the absolute name under the target, `hard` a file there.
    assert_eq!(fs::read(target.join("fine")).unwrap(), b"fine\n");
    let absolute = target
        .join(outside.strip_prefix("/").unwrap())
        .join("absolute");
    assert_eq!(fs::read(absolute).unwrap(), b"pwned\n");
    assert_eq!(fs::read(target.join("hard")).unwrap(), b"overwritten\n");
}
