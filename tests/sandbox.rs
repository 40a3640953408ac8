//! The sandbox holds: a hostile plugin gets a clear error naming it, nothing escapes, nothing
//! half-written is kept, and the host goes on.

mod support;

use std::net::TcpListener;

use support::*;

/// A deployment running only the hostile fixture plugin in `mode`, with tight limits.
fn hostile(mode: &str, extra: &str) -> Scratch {
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-hostile");
    s.deployment(&format!(
        "[limits]\nmemory-mib = 64\ncpu-seconds = 2\n\n[plugin.hostile.grant]\n\
         commands = [\"echo **\", \"sh -c *\"]\npaths = [\"/tmp/**\"]\n\n\
         [plugin.hostile.settings]\nmode = \"{mode}\"\n{extra}"
    ));
    s.init();
    s
}

/// Run a backup that must fail as a plugin failure; returns stderr.
fn refused(s: &Scratch) -> String {
    let out = s.run(&["backup"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(4),
        "expected a plugin failure, got:\n{stderr}"
    );
    assert!(
        stderr.contains("plugin `hostile`"),
        "error does not name the plugin:\n{stderr}"
    );
    assert!(!stderr.contains("escaped"), "{stderr}");
    assert_eq!(s.snapshot_count(), 0, "a failed run left a snapshot");
    assert_eq!(
        s.raw_snapshot_files(),
        0,
        "a failed run left restic-level snapshots"
    );
    stderr
}

#[test]
fn reading_a_host_file_through_wasi_finds_nothing() {
    let err = refused(&hostile("read-file", ""));
    assert!(err.contains("reading /etc/passwd"), "{err}");
}

#[test]
fn opening_a_socket_is_denied() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let err = refused(&hostile("socket", &format!("port = \"{port}\"\n")));
    assert!(err.contains("connecting"), "{err}");
    assert!(
        listener.accept().is_err(),
        "the plugin reached a socket on the host"
    );
}

#[test]
fn the_environment_is_empty() {
    let s = hostile("env", "");
    s.command(&["backup"])
        .env("SECRET_TOKEN", "hunter2")
        .output()
        .unwrap();
    let out = s.ok(&["snapshots", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("escaped"),
        "the plugin saw environment variables: {text}"
    );
    assert!(!text.contains("SECRET_TOKEN"));
}

#[test]
fn an_endless_loop_is_stopped_at_the_cpu_limit() {
    let err = refused(&hostile("loop", ""));
    assert!(err.contains("CPU limit"), "{err}");
    assert!(err.contains("in backup"), "{err}");
}

#[test]
fn unbounded_allocation_is_stopped_at_the_memory_limit() {
    let err = refused(&hostile("alloc", ""));
    assert!(err.contains("memory limit of 64 MiB"), "{err}");
}

#[test]
fn a_panic_is_reported_as_a_crash() {
    let err = refused(&hostile("panic", ""));
    assert!(err.contains("crashed in backup"), "{err}");
}

#[test]
fn an_undeclared_command_is_refused() {
    let err = refused(&hostile("exec-undeclared", ""));
    assert!(
        err.contains("may not run `cat /etc/shadow` on node `local`"),
        "{err}"
    );
}

#[test]
fn an_undeclared_path_is_refused() {
    let err = refused(&hostile("path-undeclared", ""));
    assert!(err.contains("may not access path `/root`"), "{err}");
}

#[test]
fn a_stream_that_fails_midway_is_not_kept() {
    // rustic_core logs a failed stream and saves the snapshot anyway: Coffer must not.
    let err = refused(&hostile("failing-stream", ""));
    assert!(err.contains("code 3"), "{err}");
    assert!(err.contains("boom"), "{err}");
}

#[test]
fn the_host_goes_on_after_a_hostile_plugin() {
    // One engine: a plugin that loops is stopped, then the same engine runs a plugin call that
    // works.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let limits = coffer_runtime::Limits {
            cpu: std::time::Duration::from_millis(500),
            ..Default::default()
        };
        let runtime = coffer_runtime::Runtime::new(limits, None).unwrap();
        let wasm = std::fs::read(
            std::path::Path::new(coffer_core::registry::BUILT_PLUGINS_DIR)
                .join("coffer_plugin_hostile.wasm"),
        )
        .unwrap();
        let plugin = runtime
            .load(&wasm, coffer_runtime::PluginOrigin::Builtin)
            .await
            .unwrap();
        let node = coffer_transport::NodeHandle::local("local", vec![]);
        let ctx = |mode: &str| coffer_runtime::CallContext {
            nodes: vec![node.clone()],
            settings: vec![("mode".into(), mode.into())],
            ..Default::default()
        };
        let nodes = || [("local".to_string(), node.clone())].into_iter().collect();
        let looped = runtime
            .backup(
                &plugin,
                runtime.env(&plugin, nodes(), "r1".into()),
                &ctx("loop"),
            )
            .await;
        assert!(
            matches!(looped, Err(coffer_runtime::PluginFault::CpuLimit { .. })),
            "{looped:?}"
        );
        let fine = runtime
            .backup(
                &plugin,
                runtime.env(&plugin, nodes(), "r2".into()),
                &ctx("env"),
            )
            .await;
        assert!(fine.is_ok(), "{fine:?}");
    });
}

#[test]
fn a_command_declared_but_not_granted_is_refused() {
    // Two keys: the plugin declares `echo`, but this deployment grants it only `sh -c *`.
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-hostile");
    s.deployment(
        "[plugin.hostile.grant]\ncommands = [\"sh -c *\"]\n\n[plugin.hostile.settings]\nmode = \"stream\"\n",
    );
    s.init();
    let err = refused(&s);
    assert!(
        err.contains("may not run `echo hello` on node `local`: not granted by the deployment"),
        "{err}"
    );
    // The one refusal lists everything else still to grant, as lines to paste.
    assert!(
        err.contains("everything it declares that this node is not granted")
            && err.contains("commands = ['echo **'")
            && !err.contains("'sh -c *'"),
        "{err}"
    );
    // Without any grant section a plugin from the plugin directory may do nothing at all.
    s.deployment("[plugin.hostile.settings]\nmode = \"stream\"\n");
    let err = refused(&s);
    assert!(err.contains("not granted by the deployment"), "{err}");
    let out = s.ok(&["plugins", "describe", "hostile"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("echo **") && text.contains("granted by") && text.contains("nothing"),
        "{text}"
    );
    // describe's grant block, pasted as is, grants what the plugin asks for: the run passes.
    let block = grant_block(&text, "hostile");
    assert!(block.lines().count() > 2, "{text}");
    s.deployment(&format!(
        "{block}\n\n[plugin.hostile.settings]\nmode = \"stream\"\n"
    ));
    s.ok(&["backup"]);
    // A grant for a role: it applies on the nodes carrying that role (here the undercloud).
    s.deployment(
        "[plugin.hostile.grant]\ncommands = [\"sh -c *\"]\n\
         [plugin.hostile.grant.role.undercloud]\ncommands = [\"echo hello\"]\n\n\
         [plugin.hostile.settings]\nmode = \"stream\"\n",
    );
    s.ok(&["backup"]);
    let out = s.ok(&["plugins", "describe", "hostile"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("on nodes with role `undercloud`") && text.contains("run  echo hello"),
        "{text}"
    );
    // A grant for a role no node carries is a mistake in the file, named before anything runs.
    s.deployment(
        "[plugin.hostile.grant.role.controler]\ncommands = [\"echo hello\"]\n\n\
         [plugin.hostile.settings]\nmode = \"stream\"\n",
    );
    let out = s.run(&["backup"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin.hostile.grant.role.controler") && err.contains("no node carries role"),
        "{err}"
    );
}

#[test]
fn a_plugin_built_against_the_frozen_contract_1_0_runs_through_the_adapter() {
    // Built from source against wit/v1.0 (as published) with wit-bindgen alone, no SDK.
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-contract-1-0");
    s.deployment("[plugin.legacy.grant]\ncommands = [\"echo **\"]\n");
    s.init();
    let out = s.ok(&["plugins", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    let legacy = list.lines().find(|l| l.starts_with("legacy")).unwrap();
    assert!(legacy.contains("contract 1.0.0"), "{list}");
    let out = s.ok(&["plugins", "describe", "legacy"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("nodes in parallel: no"),
        "a 1.0 plugin has no fan-out export: {text}"
    );
    assert!(
        text.contains("contract 1.0.0 (frozen 1.x, served through the adapter")
            && text.contains("changes echo **"),
        "a 1.x plugin cannot say what only reads: {text}"
    );
    // A dry run lists it on its nodes and does not call it (it could not tell what changes).
    let out = s.ok(&["backup", "--dry-run", "--json"]);
    let plan = summary(&out);
    let step = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["plugin"] == "legacy")
        .unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(step["called"], false, "{plan}");
    assert_eq!(step["nodes"][0], "local");
    assert!(
        step["note"]
            .as_str()
            .unwrap()
            .contains("built against contract 1.0.0"),
        "{plan}"
    );
    assert_eq!(s.snapshot_count(), 0);
    let out = s.ok(&["backup", "--json"]);
    let artifacts = summary(&out)["artifacts"].as_array().unwrap().clone();
    assert!(
        artifacts
            .iter()
            .any(|a| a["plugin"] == "legacy" && a["name"] == "legacy" && a["node"] == "local"),
        "{artifacts:?}"
    );
    let out = s.ok(&["validate", "latest", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("artifact recorded"), "{text}");
    let out = s.ok(&["snapshots", "show", "latest"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("1.0.0"));
}

#[test]
fn a_plugin_built_against_contract_1_3_keeps_fan_out_compat_and_undo_through_the_adapter() {
    // Built from source against wit/v1.3 (1.3.0, the last 1.x) with wit-bindgen alone.
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-contract-1-3");
    let dir = s.path("changes");
    std::fs::create_dir_all(&dir).unwrap();
    s.deployment(&format!(
        "[plugin.legacy13.grant]\ncommands = [\"echo **\", \"sh -c **\"]\n\n\
         [plugin.legacy13.settings]\ndir = {:?}\n",
        dir.display().to_string()
    ));
    s.init();
    let out = s.ok(&["plugins", "describe", "legacy13"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("contract 1.3.0 (frozen 1.x, served through the adapter")
            && text.contains("nodes in parallel: backup, validate")
            && text.contains("restores artifacts written by versions: >=1.0, <2"),
        "fan-out and compat through the adapter: {text}"
    );
    // undo.push through the adapter: the failing run runs the plugin's reversal.
    s.edit_deployment(
        "[plugin.legacy13.settings]\n",
        "[plugin.legacy13.settings]\nfail = \"yes\"\n",
    );
    let out = s.run(&["backup", "--json"]);
    let err = failed_with(&out, 4, &["legacy13", "failing on local"]);
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        (&last["exit"], &last["plugin"], &last["step"]),
        (&4.into(), &"legacy13".into(), &"backup".into()),
        "{last}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("undone")).unwrap(),
        "reversed\n",
        "{err}"
    );
    assert_eq!(s.snapshot_count(), 0);
    s.edit_deployment("fail = \"yes\"\n", "");
    let out = s.ok(&["backup", "--json"]);
    assert!(
        artifact_fields(&out, "name").contains(&"legacy13".to_string()),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("undone")).unwrap(),
        "reversed\n",
        "a released reversal does not run"
    );
    let out = s.ok(&["validate", "latest", "--json"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("artifact recorded"));
}

fn undo_deployment(s: &Scratch, mode: &str) -> std::path::PathBuf {
    let dir = s.path("changes");
    std::fs::create_dir_all(&dir).unwrap();
    s.install_fixture("coffer-plugin-hostile");
    s.deployment(&format!(
        "[plugin.hostile.grant]\ncommands = [\"sh -c **\", \"sleep *\"]\n\n\
         [plugin.hostile.settings]\nmode = \"{mode}\"\ndir = {:?}\n",
        dir.display().to_string()
    ));
    dir.join("undone")
}

fn journals(s: &Scratch) -> usize {
    std::fs::read_dir(s.path("state/undo"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_failing_run_runs_exactly_the_registered_reversals_newest_first() {
    let s = Scratch::new();
    let undone = undo_deployment(&s, "undo-fail");
    s.init();
    let out = s.run(&["backup"]);
    assert_eq!(out.status.code(), Some(4));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        std::fs::read_to_string(&undone).unwrap(),
        "third\nfirst\n",
        "{text}"
    );
    assert!(text.contains("undone on local: third change"), "{text}");
    assert_eq!(journals(&s), 0, "a fully unwound run leaves no journal");
}

#[test]
fn sigint_mid_run_runs_the_reversals() {
    let s = Scratch::new();
    let undone = undo_deployment(&s, "undo-hang");
    s.init();
    let child = s
        .command(&["backup"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_the_plugin_hangs(&s);
    sh(&format!("kill -INT {}", child.id()));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(std::fs::read_to_string(&undone).unwrap(), "third\nfirst\n");
    assert_eq!(journals(&s), 0);
}

/// Wait until the `undo-hang` plugin has registered its three reversals and kept the second,
/// so that it hangs: its journal names the third change and no longer the second (the journal
/// is rewritten on each change; a kill between the third's registration and the second's
/// release would leave three pending). The journal itself is read, not the `.tmp` file it is
/// written through.
fn wait_until_the_plugin_hangs(s: &Scratch) {
    let started = std::time::Instant::now();
    while !std::fs::read_dir(s.path("state/undo"))
        .map(|d| {
            d.flatten().any(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                e.path().extension().is_some_and(|x| x == "json")
                    && text.contains("third")
                    && !text.contains("second")
            })
        })
        .unwrap_or(false)
    {
        assert!(
            started.elapsed().as_secs() < 60,
            "the plugin never reached its hang"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn sigkill_mid_run_leaves_a_journal_that_recover_unwinds() {
    let s = Scratch::new();
    let undone = undo_deployment(&s, "undo-hang");
    s.init();
    let mut child = s
        .command(&["backup"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until_the_plugin_hangs(&s);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!undone.exists(), "nothing ran the reversals yet");
    let out = s.ok(&["recover", "--list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 pending reversal(s)") && text.contains("third change"),
        "{text}\nJOURNALS: {:?}",
        std::fs::read_dir(s.path("state/undo"))
            .unwrap()
            .flatten()
            .map(|e| (
                e.path(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            ))
            .collect::<Vec<_>>()
    );
    assert!(!undone.exists());
    s.ok(&["recover"]);
    assert_eq!(std::fs::read_to_string(&undone).unwrap(), "third\nfirst\n");
    assert_eq!(journals(&s), 0);
    let out = s.ok(&["recover"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to recover"));
}

#[test]
fn plugins_are_pinned_by_digest_and_a_changed_one_is_refused_until_upgraded() {
    let s = Scratch::new();
    s.deployment("[plugin.hostile.grant]\ncommands = [\"echo **\"]\n\n[plugin.hostile.settings]\nmode = \"stream\"\n");
    let built = std::path::Path::new(coffer_core::registry::BUILT_PLUGINS_DIR);
    let hostile = built.join("coffer_plugin_hostile.wasm");
    let out = s.ok(&["plugins", "install", hostile.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("installed hostile") && text.contains("run  echo **"),
        "{text}"
    );
    let lock = s.path("deployment.lock");
    assert!(
        std::fs::read_to_string(&lock)
            .unwrap()
            .contains("name = \"hostile\"")
    );
    s.ok(&["plugins", "verify"]);
    s.init();
    s.ok(&["backup"]);
    let out = s.run(&["plugins", "install", hostile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "installing twice needs upgrade");

    // The installed file changes behind Coffer's back (a valid component: one custom section
    // more): every run refuses it, naming both digests.
    let installed = s.path("plugins/hostile.wasm");
    let mut bytes = std::fs::read(&installed).unwrap();
    bytes.extend_from_slice(b"\x00\x05\x04test");
    let changed = s.path("changed.wasm");
    std::fs::write(&changed, &bytes).unwrap();
    std::fs::write(&installed, &bytes).unwrap();
    let out = s.run(&["backup"]);
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    let pinned = std::fs::read_to_string(&lock).unwrap();
    let pinned_digest = pinned
        .lines()
        .skip_while(|l| !l.contains("\"hostile\""))
        .find_map(|l| l.strip_prefix("sha256 = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let new_digest = coffer_sha256(&bytes);
    assert!(
        err.contains(&pinned_digest) && err.contains(&new_digest),
        "{err}"
    );
    // It says where it looked, and how to accept the one plugin without dropping the pins.
    assert!(
        err.contains(&format!("in {}", s.path("plugins").display()))
            && err.contains("coffer plugins upgrade NAME FILE.wasm")
            && err.contains("dropping the old pins"),
        "{err}"
    );
    let out = s.run(&["plugins", "verify"]);
    assert_eq!(out.status.code(), Some(4));

    // Upgrading shows the difference from the pinned build (not from the file dropped in
    // its place) and needs --yes.
    let out = s.run(&["plugins", "upgrade", "hostile", changed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("asks for the same capabilities") && text.contains("--yes"),
        "{text}"
    );
    assert!(
        text.contains(&format!("sha256 {}) -> ", &pinned_digest[..12]))
            && text.contains(": pinned ")
            && text.contains(&format!("sha256 {})", &new_digest[..12])),
        "{text}"
    );
    s.ok(&[
        "plugins",
        "upgrade",
        "hostile",
        changed.to_str().unwrap(),
        "--yes",
    ]);
    s.ok(&["plugins", "verify"]);
    s.ok(&["backup"]);
}

fn coffer_sha256(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn with_trusted_keys_only_plugins_signed_by_one_of_them_load() {
    let s = Scratch::new();
    let keygen = |name: &str| {
        let key = s.path(name);
        sh(&format!(
            "ssh-keygen -q -t ed25519 -N '' -C {name} -f {}",
            key.display()
        ));
        key
    };
    let (trusted, stranger) = (keygen("release-key"), keygen("stranger-key"));
    let sign = |key: &std::path::Path, file: &std::path::Path| {
        sh(&format!(
            "ssh-keygen -q -Y sign -n coffer-plugin -f {} {}",
            key.display(),
            file.display()
        ));
    };
    let plugin_section = "[plugin.hostile.grant]\ncommands = [\"echo **\"]\n\n[plugin.hostile.settings]\nmode = \"stream\"\n";
    s.deployment(&format!(
        "[plugin-signing]\ntrusted-keys = [{:?}]\n\n{plugin_section}",
        trusted.with_extension("pub").display().to_string()
    ));
    let built = std::path::Path::new(coffer_core::registry::BUILT_PLUGINS_DIR);
    let hostile = s.path("hostile.wasm");
    std::fs::copy(built.join("coffer_plugin_hostile.wasm"), &hostile).unwrap();
    s.init();

    // Unsigned: not installed, with the command that signs it.
    let out = s.run(&["plugins", "install", hostile.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("unsigned") && err.contains("ssh-keygen -Y sign -n coffer-plugin"),
        "{err}"
    );
    assert!(!s.path("plugins/hostile.wasm").exists());

    // Signed by a key that is not trusted: refused, naming the signer.
    sign(&stranger, &hostile);
    let out = s.run(&["plugins", "install", hostile.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("not a trusted key"), "{err}");

    // Signed by the trusted key: installed with its signature, verified, and it runs.
    std::fs::remove_file(s.path("hostile.wasm.sig")).unwrap();
    sign(&trusted, &hostile);
    let out = s.ok(&["plugins", "install", hostile.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("signed by trusted key SHA256:"),
        "{out:?}"
    );
    assert!(s.path("plugins/hostile.wasm.sig").exists());
    let out = s.ok(&["plugins", "verify"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("hostile: signed by trusted key"));
    s.ok(&["backup"]);

    // The installed file changed and re-pinned (its signature no longer matches), or its
    // signature removed: every run refuses it.
    let installed = s.path("plugins/hostile.wasm");
    let mut bytes = std::fs::read(&installed).unwrap();
    bytes.extend_from_slice(b"\x00\x05\x04test");
    std::fs::write(&installed, &bytes).unwrap();
    s.ok(&["plugins", "lock"]);
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("does not match the file"), "{err}");
    std::fs::remove_file(s.path("plugins/hostile.wasm.sig")).unwrap();
    let out = s.run(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("unsigned"), "{err}");
    let out = s.run(&["plugins", "verify"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(s.snapshot_count(), 1);
}

#[test]
fn a_plugin_built_against_a_newer_contract_is_refused_naming_both_versions() {
    // The hostile fixture as if built against 2.9.0 (a newer minor, which may import what this
    // host lacks) and 3.0.0 (another major): its handler export renamed (same length).
    for newer in ["2.9.0", "3.0.0"] {
        let s = Scratch::new();
        s.deployment("[plugin.hostile.settings]\nmode = \"stream\"\n");
        let built = std::path::Path::new(coffer_core::registry::BUILT_PLUGINS_DIR);
        let mut wasm = std::fs::read(built.join("coffer_plugin_hostile.wasm")).unwrap();
        let current = coffer_runtime::CONTRACT_VERSION;
        let from = format!("coffer:plugin/handler@{current}");
        let from = from.as_bytes();
        let to = format!("coffer:plugin/handler@{newer}");
        let mut replaced = 0;
        while let Some(i) = wasm.windows(from.len()).position(|w| w == from) {
            wasm[i..i + from.len()].copy_from_slice(to.as_bytes());
            replaced += 1;
        }
        assert!(replaced > 0, "the fixture exports handler@{current}");
        std::fs::create_dir_all(s.path("plugins")).unwrap();
        std::fs::write(s.path("plugins/hostile.wasm"), &wasm).unwrap();
        s.init();
        let out = s.run(&["backup"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("targets contract coffer:plugin@{newer}"))
                && err.contains(&format!(
                    "this coffer serves coffer:plugin@{current} (and 1.0.0 to 1.3.0 through its \
                     adapter)"
                )),
            "{err}"
        );
        assert_eq!(s.snapshot_count(), 0);
    }
}

#[test]
fn a_plugin_built_against_an_older_minor_of_2_loads() {
    // The hostile fixture as if built against 2.0.0, before `scope`, `container` and
    // `presets`: every contract name it imports and exports renamed (same length). wasmtime's
    // semver matching serves it.
    let s = Scratch::new();
    s.deployment("[plugin.hostile.settings]\nmode = \"stream\"\n");
    let built = std::path::Path::new(coffer_core::registry::BUILT_PLUGINS_DIR);
    let mut wasm = std::fs::read(built.join("coffer_plugin_hostile.wasm")).unwrap();
    let current = format!("@{}", coffer_runtime::CONTRACT_VERSION);
    let (from, to) = (current.as_bytes(), b"@2.0.0");
    let mut replaced = 0;
    while let Some(i) = wasm.windows(from.len()).position(|w| w == from) {
        wasm[i..i + from.len()].copy_from_slice(to);
        replaced += 1;
    }
    assert!(
        replaced > 4,
        "the fixture names contract {current} ({replaced})"
    );
    std::fs::create_dir_all(s.path("plugins")).unwrap();
    std::fs::write(s.path("plugins/hostile.wasm"), &wasm).unwrap();
    let out = s.ok(&["plugins", "describe", "hostile"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("contract 2.0.0"), "{text}");
}

#[test]
fn limits_set_per_plugin_override_the_deployment_ones() {
    // [limits] says 64 MiB; [plugin.hostile.limits] 32.
    let err = refused(&hostile(
        "alloc",
        "\n[plugin.hostile.limits]\nmemory-mib = 32\n",
    ));
    assert!(err.contains("memory limit of 32 MiB"), "{err}");
    // A call that waits a minute in a command, under a per-plugin wall-clock limit of 1 s for
    // the call, then for the command: a timeout has its own exit code (7), naming the node.
    for (limit, says) in [
        ("call-timeout-seconds", "did not finish backup within 1s"),
        (
            "command-timeout-seconds",
            "plugin `hostile` timed out in backup on node `local`: a command ran past its timeout of 1s",
        ),
    ] {
        let s = Scratch::new();
        s.install_fixture("coffer-plugin-hostile");
        std::fs::create_dir_all(s.path("barrier")).unwrap();
        s.deployment(&format!(
            "[limits]\ncall-timeout-seconds = 3600\n\n[plugin.hostile.grant]\n\
             commands = [\"sh -c **\"]\n\n[plugin.hostile.settings]\nmode = \"barrier\"\n\
             dir = {:?}\ncount = \"2\"\ntries = \"600\"\n\n[plugin.hostile.limits]\n\
             {limit} = 1\n",
            s.path("barrier").display().to_string()
        ));
        s.init();
        let out = s.run(&["backup", "--json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(s.snapshot_count(), 0);
        let last: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap())
                .unwrap();
        assert_eq!(
            (&last["exit"], &last["plugin"]),
            (&7.into(), &"hostile".into())
        );
        assert_eq!(last["step"], "backup");
        if limit == "command-timeout-seconds" {
            assert_eq!(last["node"], "local", "{last}");
        }
    }
}

#[test]
fn plugins_the_plan_does_not_order_run_at_once_up_to_the_limit() {
    // Two plugins with no before/after relation each wait at one barrier for the other: the
    // backup completes only if the host runs them at the same time (no clock involved).
    let s = Scratch::new();
    s.install_fixture("coffer-plugin-hostile");
    s.install_hostile_twin();
    let barrier = s.path("barrier");
    std::fs::create_dir_all(&barrier).unwrap();
    let plugin = |name: &str| {
        format!(
            "[plugin.{name}.grant]\ncommands = [\"sh -c **\"]\n\n[plugin.{name}.settings]\n\
             mode = \"barrier\"\ndir = {:?}\ncount = \"2\"\nmark = \"{name}\"\ntries = \"300\"\n",
            barrier.display().to_string()
        )
    };
    s.deployment(&format!("{}\n{}", plugin("hostile"), plugin("twinned")));
    s.init();
    let out = s.ok(&["backup", "--json"]);
    let mut arrived: Vec<String> = std::fs::read_dir(&barrier)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    arrived.sort();
    assert_eq!(arrived, ["hostile", "twinned"]);
    assert_eq!(
        artifact_fields(&out, "plugin"),
        Vec::<String>::new(),
        "barrier mode stores nothing"
    );
    // One plugin at a time: the barrier is never reached; the run fails cleanly.
    for e in std::fs::read_dir(&barrier).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    s.edit_deployment("tries = \"300\"", "tries = \"10\"");
    let text = std::fs::read_to_string(s.path("deployment.toml")).unwrap();
    std::fs::write(
        s.path("deployment.toml"),
        format!("{text}\n[run]\nparallel-plugins = 1\n"),
    )
    .unwrap();
    let out = s.run(&["backup"]);
    failed_with(&out, 4, &["hostile", "barrier"]);
    assert_eq!(s.snapshot_count(), 1);
}
