//! A service team's path: `coffer plugins new` writes a crate that passes its own tests at
//! once, builds to a component, installs, and backs up and restores a real file.

mod support;

use std::path::Path;
use std::process::Command;

use support::*;

/// `cargo ARGS` in `dir`, offline, with the lock file `plugins new` wrote, into a target
/// directory kept between runs.
fn cargo(dir: &Path, args: &[&str]) {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .arg("--offline")
        .current_dir(dir)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-author-target"),
        )
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?} in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_new_plugin_passes_its_tests_then_backs_up_and_restores_a_real_file() {
    let s = Scratch::new();
    let out = s.ok(&[
        "plugin",
        "new",
        "demo-file",
        "--dir",
        s.path("demo").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cargo test"));
    let again = s.run(&[
        "plugin",
        "new",
        "demo-file",
        "--dir",
        s.path("demo").to_str().unwrap(),
    ]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "never over an existing directory"
    );
    let crate_dir = s.path("demo");
    cargo(&crate_dir, &["test"]);
    cargo(
        &crate_dir,
        &["build", "--release", "--target", "wasm32-wasip2"],
    );
    let wasm = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("plugin-author-target/wasm32-wasip2/release/coffer_plugin_demo_file.wasm");

    let file = s.path("motd");
    std::fs::write(&file, "before\n").unwrap();
    s.deployment(&format!(
        "[plugin.demo-file.settings]\nfile = {:?}\n\n[plugin.demo-file.grant]\n\
         commands = [\"cat /**\", \"sha256sum /**\", \"sh -c **\"]\n",
        file.display().to_string()
    ));
    s.ok(&["plugins", "install", wasm.to_str().unwrap()]);
    s.init();
    let out = s.ok(&["backup", "--json"]);
    assert_eq!(artifact_fields(&out, "name"), ["file"]);
    std::fs::write(&file, "changed\n").unwrap();
    let out = s.run(&["validate", "latest"]);
    assert_eq!(out.status.code(), Some(5), "validate sees the change");
    s.ok(&["restore", "latest"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "before\n");
    s.ok(&["validate", "latest"]);
    // The scaffold has no drill: reported as such, never as passed.
    let out = s.run(&["drill"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains("demo-file: not drillable"), "{text}");
}

/// The path API, as a team writes it from the SDK guide: the scaffold's crate rewritten into a
/// plugin that archives directories (`capture_paths`) and restores them (`restore_paths`, also
/// under `--target`), then checks them with a command; it joins the `undercloud` preset.
const PATH_PLUGIN: &str = r#"
use coffer_sdk::*;

pub struct Keys;

impl Plugin for Keys {
    fn describe() -> PluginInfo {
        PluginInfo::new("demo-keys", env!("CARGO_PKG_VERSION"), "Key directories.")
            .multi_setting("dir", "A directory to keep")
            .path("/**")
            .reads("test", &["-d", "*"])
            .node_scoped(Operations::ALL)
            .presets(&["undercloud"])
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        let set = PathSet {
            paths: ctx.settings.all("dir").iter().map(|d| d.to_string()).collect(),
            excludes: vec![],
        };
        for node in &ctx.nodes {
            ctx.capture_paths(&node.name, &set, "keys.tar")?;
        }
        Ok(BackupReport::default())
    }

    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        let target = ctx.target_root.clone().unwrap_or_else(|| "/".into());
        for node in &ctx.nodes {
            for a in ctx.artifacts_of(&node.name) {
                ctx.restore_paths(&a.reference(), &node.name, &target, &ctx.selection)?;
            }
            for d in ctx.settings.all("dir") {
                let there = format!("{}{d}", target.trim_end_matches('/'));
                ctx.run_ok(&Command::on(&node.name, "test").args(["-d", &there]))?;
            }
        }
        Ok(())
    }

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let mut checks = Vec::new();
        for node in &ctx.nodes {
            for d in ctx.settings.all("dir") {
                let ok = ctx.run(&Command::on(&node.name, "test").args(["-d", d]))
                    .is_ok_and(|o| o.success());
                checks.push(Check::new(&node.name, d, ok, ""));
            }
        }
        Ok(checks)
    }
}

export_plugin!(Keys);
"#;

/// A rebuild's whole cycle for a path-based plugin, from the docs alone: a rebuilt component
/// copied over the installed one is refused (naming the plugin directory), `plugins upgrade`
/// compares it with the pinned build and installs it; `describe`'s grant block pasted as is
/// lets it run; its directories come back in place (modes kept) and under `--target`.
#[test]
fn a_path_plugin_is_rebuilt_upgraded_granted_and_restores_under_a_target() {
    let s = Scratch::new();
    s.ok(&[
        "plugin",
        "new",
        "demo-keys",
        "--dir",
        s.path("demo").to_str().unwrap(),
    ]);
    let crate_dir = s.path("demo");
    let build = || {
        cargo(
            &crate_dir,
            &["build", "--release", "--target", "wasm32-wasip2"],
        );
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("plugin-author-target/wasm32-wasip2/release/coffer_plugin_demo_keys.wasm")
    };
    let wasm = build();
    s.deployment("[plugin.demo-keys.grant]\ncommands = []\n");
    s.ok(&["plugins", "install", wasm.to_str().unwrap()]);

    // Rebuilt as the path plugin, and dropped into the plugin directory by hand.
    std::fs::write(crate_dir.join("src/lib.rs"), PATH_PLUGIN).unwrap();
    let rebuilt = std::fs::read(build()).unwrap();
    let candidate = s.path("demo-keys-2.wasm");
    std::fs::write(&candidate, &rebuilt).unwrap();
    std::fs::write(s.path("plugins/demo-keys.wasm"), &rebuilt).unwrap();
    s.init();
    failed_with(
        &s.run(&["backup"]),
        4,
        &[
            &s.path("plugins").display().to_string(),
            "plugins upgrade NAME FILE.wasm",
        ],
    );
    let out = s.run(&[
        "plugins",
        "upgrade",
        "demo-keys",
        candidate.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(": pinned 0.1.0")
            && text.contains("the plugin directory now holds another build"),
        "{text}"
    );
    s.ok(&[
        "plugins",
        "upgrade",
        "demo-keys",
        candidate.to_str().unwrap(),
        "--yes",
    ]);

    // describe's grant block, pasted as is.
    let keys = s.path("etc/keystone/fernet-keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("0"), "key-0").unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let described = s.ok(&["plugins", "describe", "demo-keys"]);
    let text = String::from_utf8_lossy(&described.stdout).to_string();
    let block = grant_block(&text, "demo-keys");
    s.deployment(&format!(
        "{block}\n[plugin.demo-keys.settings]\ndir = [{:?}]\n",
        keys.display().to_string()
    ));
    // It joined the undercloud preset by declaring it.
    assert!(
        text.contains("backed up by: coffer backup --undercloud"),
        "{text}"
    );
    let out = s.ok(&["backup", "--undercloud", "--json"]);
    assert!(
        artifact_fields(&out, "plugin").contains(&"demo-keys".to_string()),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let before = record_tree(&keys);
    std::fs::remove_dir_all(&keys).unwrap();
    failed_with(&s.run(&["validate", "latest"]), 5, &[]);
    s.ok(&["restore", "latest"]);
    assert_same_tree(&before, &record_tree(&keys));
    s.ok(&["validate", "latest"]);
    let target = s.path("elsewhere");
    std::fs::create_dir_all(&target).unwrap();
    s.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let moved = target.join(keys.strip_prefix("/").unwrap());
    assert_same_tree(&before, &record_tree(&moved));
}
