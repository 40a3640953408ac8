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
}
