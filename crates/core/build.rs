//! Builds the first-party plugins (and the test fixture plugins) for wasm32-wasip2, so that
//! the `coffer` binary ships with them and a user never builds them separately.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Plugins embedded in the binary: (crate, plugin name).
const BUILTIN: &[(&str, &str)] = &[
    ("coffer-plugin-filesystem", "filesystem"),
    ("coffer-plugin-mysql", "mysql"),
    ("coffer-plugin-galera", "galera"),
    ("coffer-plugin-redis", "redis"),
    ("coffer-plugin-pacemaker", "pacemaker"),
    ("coffer-plugin-mongodb", "mongodb"),
    ("coffer-plugin-swift", "swift"),
];
/// Plugins built for the test suite only, left in the plugin output directory.
const FIXTURES: &[&str] = &[
    "coffer-plugin-hostile",
    "coffer-plugin-contract-1-0",
    "coffer-plugin-contract-1-3",
    // The SDK tutorial's plugin: installed like a third-party plugin in its test.
    "coffer-plugin-rabbitmq",
];
/// Earlier releases rebuilt from their feature for the cross-version tests: (crate, feature,
/// file name in the plugin output directory). Each is built on its own so that the feature
/// does not reach the built-in plugin.
const RELEASES: &[(&str, &str, &str)] = &[(
    "coffer-plugin-filesystem",
    "release-0-1",
    "coffer_plugin_filesystem_0_1.wasm",
)];

/// `cargo build` of plugins for wasm32-wasip2 into `target_dir`, free of the outer build's
/// settings.
fn plugin_build(workspace: &Path, target_dir: &Path) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--profile", "plugin", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(target_dir);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn run(mut cmd: Command) {
    let status = cmd.status().expect("running cargo for the plugins");
    if !status.success() {
        panic!(
            "building the plugins for wasm32-wasip2 failed: the compiler's errors are above \
             (`cargo build -vv` shows them); if the target is missing, run \
             `rustup target add wasm32-wasip2`."
        );
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.ancestors().nth(2).unwrap().to_path_buf();
    for dir in ["wit", "sdk/src", "sdk/Cargo.toml", "plugins", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/coffer-core-<hash>/out.
    let target_root = out_dir.ancestors().nth(4).unwrap().to_path_buf();
    let wasm_target = target_root.join("plugins-wasm");
    let mut cmd = plugin_build(&workspace, &wasm_target);
    for (krate, _) in BUILTIN {
        cmd.args(["-p", krate]);
    }
    for krate in FIXTURES {
        cmd.args(["-p", krate]);
    }
    run(cmd);
    let built = wasm_target.join("wasm32-wasip2").join("plugin");
    for (krate, feature, file) in RELEASES {
        let dir = wasm_target.join(feature);
        let mut cmd = plugin_build(&workspace, &dir);
        cmd.args(["-p", krate, "--features", &format!("{krate}/{feature}")]);
        run(cmd);
        let from = wasm_file(&dir.join("wasm32-wasip2").join("plugin"), krate);
        std::fs::copy(&from, built.join(file)).unwrap();
    }
    let mut code =
        String::from("/// Plugins shipped inside the binary: (name, component bytes).\n");
    code.push_str("pub static BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n");
    for (krate, name) in BUILTIN {
        let file = wasm_file(&built, krate);
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    code.push_str(&format!(
        "/// Where the build left every plugin component, test fixtures included.\npub const BUILT_PLUGINS_DIR: &str = {:?};\n",
        built.display().to_string()
    ));
    std::fs::write(out_dir.join("builtin_plugins.rs"), code).unwrap();
}

fn wasm_file(dir: &Path, krate: &str) -> PathBuf {
    let f = dir.join(format!("{}.wasm", krate.replace('-', "_")));
    assert!(f.exists(), "{} was not built", f.display());
    f
}
