//! The `pacemaker` plugin. Backup: the CIB (`cibadmin --query`, whole and its configuration
//! section) and `/etc/corosync`, from one member, and the role of every resource. Restore:
//! replace the live CIB's configuration section with the backed-up one (`cibadmin --replace
//! --scope configuration`, which a running cluster accepts even though the copy is older),
//! with the configuration it replaced saved on the node and its re-installation registered
//! with the host as the undo; then wait for the cluster to settle. Validate: the cluster has
//! quorum and every resource is in the role it had at backup time.

use coffer_sdk::*;

/// The whole CIB.
pub const CIB: &str = "cib.xml";
/// The CIB's configuration section.
pub const CONFIGURATION: &str = "configuration.xml";
/// `/etc/corosync`.
pub const COROSYNC: &str = "corosync";
/// `pcs config backup`: CIB, corosync.conf, pcsd settings (restored by `pcs config restore`).
pub const PCS_BACKUP: &str = "pcs-config.tar.bz2";
/// Record: `resource \t role`.
pub const ROLE: &str = "role";

/// `pcs config backup` to "$1.tar.bz2", written to stdout, then removed.
const PCS_CONFIG_BACKUP: &str =
    "umask 077 && pcs config backup \"$1\" >&2 && cat \"$1.tar.bz2\" && rm -f \"$1.tar.bz2\"";

/// Saves the live configuration section to "$1".
const SAVE_CONFIGURATION: &str = "umask 077 && cibadmin --query --scope configuration > \"$1\"";

/// Writes stdin to "$1" (a drill's copy of the CIB).
const WRITE_FILE: &str = "umask 077 && cat > \"$1\"";

/// The resources "$2"… (as `crm_mon` named them) that the CIB in "$1" does not configure, one a
/// line. A clone instance (`dummy:0`) is its resource; a bundle replica (`galera-bundle-0`,
/// `galera-bundle-podman-0`) its bundle.
const MISSING_RESOURCES: &str = "f=$1; shift; for r; do b=${r%%:*}; c=${b%-[0-9]*}; \
    c=${c%-podman}; c=${c%-docker}; grep -qF \"id=\\\"$b\\\"\" \"$f\" || \
    grep -qF \"id=\\\"$c\\\"\" \"$f\" || echo \"$r\"; done";

/// The pacemaker plugin.
pub struct Pacemaker;

/// `(id, role)` of every resource `crm_mon --output-as=xml` lists, and whether the partition
/// has quorum.
fn status(ctx: &Context<'_>, node: &str) -> Result<(bool, Vec<(String, String)>), PluginError> {
    let xml = ctx
        .run_ok(&Command::on(node, "crm_mon").args(["-1", "--output-as=xml"]))?
        .stdout_text();
    let attr = |tag: &str, name: &str| {
        let key = format!("{name}=\"");
        tag.find(&key).map(|i| {
            let rest = &tag[i + key.len()..];
            rest[..rest.find('"').unwrap_or(rest.len())].to_string()
        })
    };
    let quorum = xml
        .split('<')
        .find(|t| t.starts_with("current_dc "))
        .and_then(|t| attr(t, "with_quorum"))
        .is_some_and(|q| q == "true");
    let roles = xml
        .split('<')
        .filter(|t| t.starts_with("resource "))
        .filter_map(|t| Some((attr(t, "id")?, attr(t, "role")?)))
        .collect();
    Ok((quorum, roles))
}

/// Wait (`crm_resource --wait`) until the cluster has settled, at most `settle-timeout-seconds`.
fn settle(ctx: &Context<'_>, n: &str) -> Result<(), PluginError> {
    let timeout: u64 = ctx.settings.parse_or("settle-timeout-seconds", 300)?;
    ctx.run_ok(
        &Command::on(n, "crm_resource")
            .args(["--wait", "--timeout", &format!("{timeout}s")])
            .timeout(std::time::Duration::from_secs(timeout + 30)),
    )
    .map(drop)
}

/// The first member (in deployment order) whose partition has quorum: a member that is down or
/// cut off is skipped (and said), not fatal.
fn member<'c>(ctx: &'c Context<'_>) -> Result<&'c str, PluginError> {
    let mut skipped = Vec::new();
    for node in &ctx.nodes {
        let n = node.name.as_str();
        match status(ctx, n) {
            Ok((true, _)) => {
                for s in &skipped {
                    ctx.warn(format!("skipped {s}"));
                }
                return Ok(n);
            }
            Ok((false, _)) => skipped.push(format!("{n}: its partition has no quorum")),
            Err(e) => skipped.push(format!("{n}: {e}")),
        }
    }
    if skipped.is_empty() {
        return Err(PluginError::Precondition("no cluster member".into()));
    }
    Err(PluginError::Precondition(format!(
        "no member of the cluster has quorum (is the cluster running?): {}",
        skipped.join("; ")
    )))
}

/// After a start: wait (at most `settle-timeout-seconds`) until a member has quorum.
fn quorate_member<'c>(ctx: &'c Context<'_>) -> Result<&'c str, PluginError> {
    let timeout: u64 = ctx.settings.parse_or("settle-timeout-seconds", 300)?;
    let mut waited = 0;
    loop {
        match member(ctx) {
            Ok(n) => return Ok(n),
            Err(e) if waited >= timeout => return Err(e),
            Err(_) => {
                let n = &ctx.nodes[0].name;
                ctx.run_ok(&Command::on(n, "sleep").arg("1"))?;
                waited += 1;
            }
        }
    }
}

impl Plugin for Pacemaker {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "pacemaker",
            env!("CARGO_PKG_VERSION"),
            "Pacemaker/corosync: the CIB and /etc/corosync; restore replaces the live \
             configuration section (the previous one kept and put back if the run fails); \
             validate checks quorum and every resource's role.",
        )
        .roles(&["controller", "pacemaker"])
        .presets(&["controllers"])
        .setting(
            "settle-timeout-seconds",
            "How long to wait for the cluster to settle",
            Some("300"),
        )
        .reads("cibadmin", &["--query"])
        .reads("cibadmin", &["--query", "--scope", "configuration"])
        .command(
            "cibadmin",
            &["--replace", "--scope", "configuration", "--xml-pipe"],
        )
        .command(
            "cibadmin",
            &[
                "--replace",
                "--scope",
                "configuration",
                "--xml-file",
                "/var/lib/pacemaker/cib/coffer-*.xml",
            ],
        )
        .command(
            "sh",
            &[
                "-c",
                &literal(SAVE_CONFIGURATION),
                "coffer",
                "/var/lib/pacemaker/cib/coffer-*.xml",
            ],
        )
        .command("rm", &["-f", "/var/lib/pacemaker/cib/coffer-*.xml"])
        .reads("crm_mon", &["-1", "--output-as=xml"])
        // A drill: the CIB checked in a scratch directory, the cluster never asked.
        .command(
            "sh",
            &[
                "-c",
                &literal(WRITE_FILE),
                "coffer",
                "*/coffer-drill-pacemaker-*/cib.xml",
            ],
        )
        .reads(
            "crm_verify",
            &["--xml-file", "*/coffer-drill-pacemaker-*/cib.xml"],
        )
        .reads(
            "sh",
            &[
                "-c",
                &literal(MISSING_RESOURCES),
                "coffer",
                "*/coffer-drill-pacemaker-*/cib.xml",
                "**",
            ],
        )
        // Waits for the cluster to settle; changes nothing.
        .reads("crm_resource", &["--wait", "--timeout", "*"])
        .reads("sleep", &["1"])
        .setting(
            "restore-mode",
            "`cib`: replace the live configuration section; `full`: stop the cluster on every \
             node, `pcs config restore --local` there, start it again",
            Some("cib"),
        )
        .command(
            "sh",
            &[
                "-c",
                &literal(PCS_CONFIG_BACKUP),
                "coffer",
                "/run/coffer-pcs-*",
            ],
        )
        .command("pcs", &["config", "restore", "--local"])
        .command("systemctl", &["stop", "pacemaker"])
        .command("systemctl", &["stop", "corosync"])
        .command("systemctl", &["start", "corosync"])
        .command("systemctl", &["start", "pacemaker"])
        .path("/etc/corosync")
        .path("/etc/corosync/**")
        // One member's view of the cluster: restorable through any quorate member.
        .cluster_artifacts(&[CIB, CONFIGURATION, COROSYNC, PCS_BACKUP])
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        let n = member(ctx)?;
        ctx.capture(&Command::on(n, "cibadmin").arg("--query"), CIB)?;
        let a = ctx.capture(
            &Command::on(n, "cibadmin").args(["--query", "--scope", "configuration"]),
            CONFIGURATION,
        )?;
        let corosync = PathSet {
            paths: vec!["/etc/corosync".into()],
            excludes: vec![],
        };
        ctx.capture_paths(n, &corosync, COROSYNC)?;
        let run = ctx.run_slug();
        ctx.capture(
            &Command::on(n, "sh").args([
                "-c",
                PCS_CONFIG_BACKUP,
                "coffer",
                &format!("/run/coffer-pcs-{run}"),
            ]),
            PCS_BACKUP,
        )?;
        let (_, roles) = status(ctx, n)?;
        let mut report = BackupReport::default();
        for (id, role) in &roles {
            report.records.push(ROLE, format!("{id}\t{role}"));
        }
        ctx.info(format!(
            "{n}: CIB ({} bytes of configuration), {} resource(s), /etc/corosync",
            a.size,
            roles.len()
        ));
        Ok(report)
    }

    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        match ctx.settings.get("restore-mode").unwrap_or("cib") {
            "cib" => {}
            "full" => return restore_full(ctx),
            other => {
                return Err(PluginError::InvalidSettings(format!(
                    "restore-mode `{other}`: use `cib` or `full`"
                )));
            }
        }
        let n = member(ctx)?;
        let configuration = ctx
            .artifacts
            .iter()
            .find(|a| a.name == CONFIGURATION)
            .ok_or_else(|| {
                PluginError::Precondition(format!("the snapshot has no {CONFIGURATION}"))
            })?;
        let run = ctx.run_slug();
        let saved = format!("/var/lib/pacemaker/cib/coffer-before-{run}.xml");
        ctx.run_ok(&Command::on(n, "sh").args(["-c", SAVE_CONFIGURATION, "coffer", &saved]))?;
        let undo = ctx.undo_with(
            &Command::on(n, "cibadmin").args([
                "--replace",
                "--scope",
                "configuration",
                "--xml-file",
                &saved,
            ]),
            "put back the configuration the restore replaced",
        )?;
        ctx.feed(
            &configuration.reference(),
            &Command::on(n, "cibadmin").args([
                "--replace",
                "--scope",
                "configuration",
                "--xml-pipe",
            ]),
        )?;
        settle(ctx, n)?;
        ctx.keep(undo);
        ctx.run_ok(&Command::on(n, "rm").args(["-f", &saved]))?;
        ctx.info(format!(
            "{n}: CIB configuration replaced; the cluster settled"
        ));
        Ok(())
    }

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        // Every member must be up and in the quorate partition; the roles are one member's view.
        let mut checks = Vec::new();
        let mut view = None;
        for node in &ctx.nodes {
            let n = node.name.as_str();
            let (quorum, detail) = match status(ctx, n) {
                Ok((quorum, roles)) => {
                    if quorum && view.is_none() {
                        view = Some((n, roles));
                    }
                    (quorum, String::new())
                }
                Err(e) => (false, e.to_string()),
            };
            checks.push(Check::new(n, "quorum", quorum, detail));
        }
        let Some((n, roles)) = view else {
            return Ok(checks);
        };
        for r in ctx.records.all(ROLE) {
            let Some((id, want)) = r.split_once('\t') else {
                continue;
            };
            let got = roles
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, role)| role.as_str())
                .unwrap_or("absent");
            checks.push(Check::new(
                n,
                &format!("resource {id}"),
                got == want,
                format!("{got}, backup had {want}"),
            ));
        }
        Ok(checks)
    }

    /// The saved CIB, in the scratch directory: `crm_verify` accepts it, and it configures every
    /// resource the backup saw running. No cluster is contacted.
    fn drill(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let (on, root) = ctx.drill_place()?;
        let on = on.as_str();
        let cib = ctx
            .artifacts
            .iter()
            .find(|a| a.name == CIB)
            .ok_or_else(|| PluginError::Precondition(format!("the snapshot has no {CIB}")))?;
        let file = format!("{root}/{CIB}");
        ctx.feed(
            &cib.reference(),
            &Command::on(on, "sh").args(["-c", WRITE_FILE, "coffer", &file]),
        )?;
        let failed = |e: ExecError| PluginError::CommandFailed(format!("{on}: {e}"));
        let verify = ctx
            .run(&Command::on(on, "crm_verify").args(["--xml-file", &file]))
            .map_err(failed)?;
        let said = format!("{}{}", verify.stdout_text(), verify.stderr_text());
        let mut checks = vec![Check::new(
            on,
            &format!("{CIB} passes crm_verify"),
            verify.success(),
            said.trim(),
        )];
        let ids: Vec<String> = ctx
            .records
            .all(ROLE)
            .iter()
            .filter_map(|r| r.split_once('\t').map(|(id, _)| id.to_string()))
            .collect();
        let missing = ctx
            .run(
                &Command::on(on, "sh")
                    .args(["-c", MISSING_RESOURCES, "coffer", &file])
                    .args(ids.iter().map(String::as_str)),
            )
            .map_err(failed)?;
        let missing = missing.stdout_text();
        checks.push(Check::new(
            on,
            &format!(
                "{CIB} configures the {} resource(s) the backup saw",
                ids.len()
            ),
            missing.trim().is_empty(),
            if missing.trim().is_empty() {
                ids.join(", ")
            } else {
                format!(
                    "missing: {}",
                    missing.split_whitespace().collect::<Vec<_>>().join(", ")
                )
            },
        ));
        Ok(checks)
    }
}

/// Stop the cluster everywhere (pacemaker, then corosync), `pcs config restore --local` the
/// backup on every node, start it again (corosync, then pacemaker). Starting again is
/// registered with the host before anything stops.
fn restore_full(ctx: &Context<'_>) -> Result<(), PluginError> {
    let backup = ctx
        .artifacts
        .iter()
        .find(|a| a.name == PCS_BACKUP)
        .ok_or_else(|| PluginError::Precondition(format!("the snapshot has no {PCS_BACKUP}")))?;
    let systemctl =
        |n: &str, verb: &str, unit: &str| Command::on(n, "systemctl").args([verb, unit]);
    let mut undo = Vec::new();
    for node in &ctx.nodes {
        let n = node.name.as_str();
        undo.push(ctx.undo_with(
            &systemctl(n, "start", "pacemaker"),
            &format!("start pacemaker on {n}"),
        )?);
        undo.push(ctx.undo_with(
            &systemctl(n, "start", "corosync"),
            &format!("start corosync on {n}"),
        )?);
    }
    for node in &ctx.nodes {
        ctx.run_ok(&systemctl(&node.name, "stop", "pacemaker"))?;
    }
    for node in &ctx.nodes {
        ctx.run_ok(&systemctl(&node.name, "stop", "corosync"))?;
    }
    for node in &ctx.nodes {
        ctx.feed(
            &backup.reference(),
            &Command::on(&node.name, "pcs").args(["config", "restore", "--local"]),
        )?;
    }
    for node in &ctx.nodes {
        ctx.run_ok(&systemctl(&node.name, "start", "corosync"))?;
    }
    for node in &ctx.nodes {
        ctx.run_ok(&systemctl(&node.name, "start", "pacemaker"))?;
    }
    let n = quorate_member(ctx)?;
    settle(ctx, n)?;
    for u in undo {
        ctx.keep(u);
    }
    ctx.info("cluster configuration restored with pcs config restore; the cluster runs again");
    Ok(())
}

export_plugin!(Pacemaker);

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_sdk::testing::{Call, Harness, Reply, Transcript};

    const CRM_MON: [&str; 3] = ["crm_mon", "-1", "--output-as=xml"];
    const SAVED: &str = "/var/lib/pacemaker/cib/coffer-before-test-run.xml";

    fn crm_mon(quorum: bool) -> Reply {
        Reply::stdout(format!(
            "<pacemaker-result><summary><current_dc present=\"true\" name=\"p2\" \
             with_quorum=\"{quorum}\"/></summary><resources>\
             <resource id=\"ip-172.17.0.10\" resource_agent=\"ocf:heartbeat:IPaddr2\" \
             role=\"Started\"/><bundle id=\"galera-bundle\"><replica id=\"0\">\
             <resource id=\"galera\" role=\"Promoted\"/></replica></bundle>\
             </resources></pacemaker-result>\n"
        ))
    }

    fn cluster(nodes: &[&str]) -> Harness {
        let mut h = Harness::new();
        for n in nodes {
            h = h.node(n, &["pacemaker"]);
        }
        h.reply(&CRM_MON, crm_mon(true))
    }

    /// Indices of the first line starting with `f(node)`, for every node.
    fn each(log: &Transcript, nodes: &[&str], f: impl Fn(&str) -> String) -> Vec<usize> {
        nodes.iter().map(|n| log.first(&f(n))).collect()
    }

    #[test]
    fn backup_captures_the_cib_from_the_first_quorate_member() {
        // The first matching rule answers: p1's comes before the cluster's.
        let h = Harness::new()
            .node("p1", &["pacemaker"])
            .node("p2", &["pacemaker"])
            .reply_on("p1", &CRM_MON, crm_mon(false))
            .reply(&CRM_MON, crm_mon(true))
            .reply(
                &["cibadmin", "--query", "--scope"],
                Reply::stdout("<configuration/>"),
            )
            .reply(
                &["cibadmin", "--query"],
                Reply::stdout("<cib><configuration/></cib>"),
            )
            .reply(&["sh"], Reply::stdout("BZh9"));
        let report = h.backup::<Pacemaker>().unwrap();
        let log = h.transcript();
        let cib = log.first(&format!("capture {CIB} p2: cibadmin --query"));
        let configuration = log.first(&format!(
            "capture {CONFIGURATION} p2: cibadmin --query --scope configuration"
        ));
        let corosync = log.first(&format!("capture-paths {COROSYNC} p2: /etc/corosync"));
        let pcs = log.first(&format!(
            "capture {PCS_BACKUP} p2: sh -c {PCS_CONFIG_BACKUP} coffer /run/coffer-pcs-test-run"
        ));
        assert!(log.first("p1: crm_mon") < log.first("p2: crm_mon"));
        assert!(log.first("p2: crm_mon") < cib, "{log:#?}");
        assert!(cib < configuration && configuration < corosync && corosync < pcs);
        assert!(
            !log.iter()
                .any(|l| l.starts_with("capture") && l.contains(" p1: ")),
            "p1 has no quorum: {log:#?}"
        );
        assert_eq!(
            h.artifact_bytes("p2", CIB).unwrap(),
            b"<cib><configuration/></cib>"
        );
        assert_eq!(
            h.artifact_bytes("p2", CONFIGURATION).unwrap(),
            b"<configuration/>"
        );
        assert_eq!(
            report.records.all(ROLE),
            ["ip-172.17.0.10\tStarted", "galera\tPromoted"]
        );
        assert!(
            h.logs()
                .iter()
                .any(|(l, m)| *l == Level::Warn && m.contains("p1: its partition has no quorum")),
            "{:?}",
            h.logs()
        );
    }

    #[test]
    fn restore_saves_the_live_configuration_replaces_it_and_waits() {
        let h = cluster(&["p1", "p2"]).artifact(
            "p1",
            CONFIGURATION,
            ArtifactKind::Stream,
            b"<configuration/>",
        );
        h.restore::<Pacemaker>().unwrap();
        let log = h.transcript();
        let save = log.first(&format!("p1: sh -c {SAVE_CONFIGURATION} coffer {SAVED}"));
        let reinstall = log.first(&format!(
            "undo-push p1: cibadmin --replace --scope configuration --xml-file {SAVED}"
        ));
        let replace = log.first(&format!(
            "feed {CONFIGURATION} p1: cibadmin --replace --scope configuration --xml-pipe"
        ));
        let settle = log.first("p1: crm_resource --wait --timeout 300s");
        let release = log.first("undo-release");
        let rm = log.first(&format!("p1: rm -f {SAVED}"));
        assert!(log.first("p1: crm_mon") < save, "{log:#?}");
        assert!(save < reinstall && reinstall < replace && replace < settle);
        assert!(settle < release && release < rm, "{log:#?}");
        // The member with quorum does it all; p2 is not touched.
        assert!(!log.iter().any(|l| l.contains("p2")), "{log:#?}");
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
        let wait = h.calls().into_iter().find_map(|c| match c {
            Call::Exec(c) if c.argv[0] == "crm_resource" => Some(c),
            _ => None,
        });
        assert_eq!(
            wait.unwrap().timeout,
            Some(std::time::Duration::from_secs(330))
        );
    }

    #[test]
    fn a_cluster_that_does_not_settle_leaves_the_old_configuration_to_be_reinstalled() {
        let h = cluster(&["p1"])
            .artifact(
                "p1",
                CONFIGURATION,
                ArtifactKind::Stream,
                b"<configuration/>",
            )
            .reply(&["crm_resource", "--wait"], Reply::fail(124, "timed out"));
        h.restore::<Pacemaker>().unwrap_err();
        let pending = h.pending_undo();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].0, "p1");
        assert_eq!(
            pending[0].1,
            [
                "cibadmin",
                "--replace",
                "--scope",
                "configuration",
                "--xml-file",
                SAVED
            ]
        );
        // The saved configuration stays on the node for the undo.
        assert!(!h.transcript().iter().any(|l| l.starts_with("p1: rm")));
    }

    #[test]
    fn full_restore_stops_everywhere_restores_then_starts_corosync_before_pacemaker() {
        let nodes = ["p1", "p2", "p3"];
        let h = cluster(&nodes).setting("restore-mode", "full").artifact(
            "p1",
            PCS_BACKUP,
            ArtifactKind::Stream,
            b"BZh9",
        );
        h.restore::<Pacemaker>().unwrap();
        let log = h.transcript();
        let max = |v: &[usize]| *v.iter().max().unwrap();
        let min = |v: &[usize]| *v.iter().min().unwrap();
        let undo_pacemaker = each(&log, &nodes, |n| {
            format!("undo-push {n}: systemctl start pacemaker")
        });
        let undo_corosync = each(&log, &nodes, |n| {
            format!("undo-push {n}: systemctl start corosync")
        });
        let stop_pacemaker = each(&log, &nodes, |n| format!("{n}: systemctl stop pacemaker"));
        let stop_corosync = each(&log, &nodes, |n| format!("{n}: systemctl stop corosync"));
        let restore = each(&log, &nodes, |n| {
            format!("feed {PCS_BACKUP} {n}: pcs config restore --local")
        });
        let start_corosync = each(&log, &nodes, |n| format!("{n}: systemctl start corosync"));
        let start_pacemaker = each(&log, &nodes, |n| format!("{n}: systemctl start pacemaker"));
        let quorum = log.first("p1: crm_mon");
        let settle = log.first("p1: crm_resource --wait");

        assert!(max(&undo_pacemaker).max(max(&undo_corosync)) < min(&stop_pacemaker));
        assert!(max(&stop_pacemaker) < min(&stop_corosync), "{log:#?}");
        assert!(max(&stop_corosync) < min(&restore), "{log:#?}");
        assert!(max(&restore) < min(&start_corosync), "{log:#?}");
        assert!(max(&start_corosync) < min(&start_pacemaker), "{log:#?}");
        assert!(
            max(&start_pacemaker) < quorum && quorum < settle,
            "{log:#?}"
        );
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
    }

    #[test]
    fn the_drills_resource_check_finds_primitives_clones_and_bundle_replicas() {
        let dir = std::env::temp_dir().join(format!("coffer-cib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cib = dir.join("cib.xml");
        std::fs::write(
            &cib,
            r#"<resources><primitive id="vip"/><clone id="dummy-clone"><primitive id="dummy"/></clone>
            <bundle id="galera-bundle"/></resources>"#,
        )
        .unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", MISSING_RESOURCES, "coffer"])
            .arg(&cib)
            .args([
                "vip",
                "dummy:1",
                "galera-bundle-podman-0",
                "galera-bundle-1",
                "api",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "api\n");
        let _ = std::fs::remove_dir_all(dir);
    }
}
