//! `coffer plugins new NAME`: a plugin crate that builds and passes its own tests at once,
//! for a service team starting from nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::UsageError;

const CARGO_TOML: &str = include_str!("scaffold/Cargo.toml.in");
const LIB_RS: &str = include_str!("scaffold/lib.rs.in");
const README: &str = include_str!("scaffold/README.md.in");
/// The workspace's lock file: the new crate builds with the dependency versions Coffer's own
/// plugins are tested with, without resolving anything anew.
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");
/// The SDK of the checkout this binary was built from.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk");

/// `rabbitmq-defs` → `RabbitmqDefs`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Write the crate for plugin `name` into `dir` (default `./NAME`), depending on the SDK at
/// `sdk` (default: the checkout this coffer was built from). Returns the crate's directory.
pub fn new_plugin(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> Result<PathBuf> {
    let valid = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(UsageError(format!(
            "plugin name `{name}`: lower-case letters, digits and `-`, starting with a letter"
        ))
        .into());
    }
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        return Err(
            UsageError(format!("{} exists already; nothing written", dir.display())).into(),
        );
    }
    let sdk = sdk
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(BUILT_SDK));
    let sdk = sdk.canonicalize().map_err(|e| {
        UsageError(format!(
            "the Coffer SDK is not at {} ({e}); pass --sdk PATH to a Coffer checkout's sdk/",
            sdk.display()
        ))
    })?;
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{type}}", &type_name(name))
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let write = |rel: &str, text: &str| -> Result<()> {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("a file in the crate"))
            .and_then(|()| std::fs::write(&path, text))
            .with_context(|| format!("writing {}", path.display()))
    };
    write("Cargo.toml", &fill(CARGO_TOML))?;
    write("src/lib.rs", &fill(LIB_RS))?;
    write("README.md", &fill(README))?;
    write("Cargo.lock", CARGO_LOCK)?;
    write(".gitignore", "/target\n")?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_rust_types_and_bad_names_are_refused() {
        assert_eq!(type_name("rabbitmq-defs"), "RabbitmqDefs");
        assert_eq!(type_name("demo"), "Demo");
        for bad in ["", "Demo", "9x", "a_b", "a b"] {
            assert!(new_plugin(bad, None, None).is_err(), "{bad:?}");
        }
    }
}
