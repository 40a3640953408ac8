//! The `galera` plugin: a MariaDB Galera cluster on the overcloud controllers.
//!
//! - **validate**: every node `Synced`, one `wsrep_cluster_state_uuid`, `wsrep_cluster_size`
//!   equal to the number of nodes; each failing node named with what it reports.
//! - **backup**: from an idle member: `Synced`, not in `avoid`, and not taking writes (`wsrep_local_commits`,
//!   the transactions its own clients commit, sampled over `write-sample-seconds`: the load
//!   balancer's preferred member is the one whose count moves). When every member takes writes, the one with the
//!   fewest is used and the run says so; `source` forces a member. With `desync = true` the
//!   member is desynced for the dump and resynced afterwards, also when the dump fails. The
//!   snapshot records the source.
//! - **restore**, the talk's runbook: block client access to 3306 on every member (iptables),
//!   stop the server everywhere, move each old datadir aside (never deleted), create a new
//!   database on each, bootstrap one member (`galera_new_cluster`), import dump and grants
//!   there, start the others (they join by SST), wait until all are `Synced`, unblock. The block
//!   is removed whatever happens; after a failure the old datadirs stay where the error says.
//!   With `pacemaker-resource` (TripleO's `galera-bundle`), Pacemaker is told to leave the
//!   resource alone for the restore and given it back afterwards (or by the host's undo).
//! - **members lost**: the dump and grants are cluster artifacts (contract 2.1's `scope`): a
//!   restore gets them whichever member they were taken on and runs on the members taking
//!   part; the bootstrap member is `bootstrap`, else the recorded source if it takes part, else
//!   the first member (said with a warning); the others join and the wait is for a cluster of
//!   as many members as take part. A backup with a member unreachable dumps from a survivor.
//! - **members in containers** (TripleO's `galera-bundle-podman-N`, found per node by a glob;
//!   kolla's `mariadb`): dumps and queries go through each member's container; the restore
//!   takes the datadir steps on the node around it (contract 2.2): every container stopped, the
//!   directory behind its datadir moved aside and a new one initialised by a one-shot container
//!   of the same image and volumes; the bootstrap member's container is renamed aside while a
//!   one-shot server of the same image, volumes and host network, started with
//!   `--wsrep-new-cluster`, takes its name (as kolla-ansible's recovery does), so the import
//!   goes into it; the other members' containers start and join; then the member's own
//!   container replaces the one-shot server and joins too. The firewall and `pcs` run on the
//!   nodes, outside the containers.

use coffer_mysql_common::container::{self as containers, Contained};
use coffer_mysql_common::{self as sql, Datadir};
use coffer_pacemaker_common as pcm;
use coffer_sdk::*;

/// Record: the member the backup was taken from.
pub const SOURCE: &str = "source";

/// The galera plugin.
pub struct Galera;

/// What a member reports about itself.
#[derive(Debug, Default)]
struct Member {
    state: String,
    uuid: String,
    size: usize,
    /// Transactions committed for this member's own clients (`wsrep_local_commits`): replicated
    /// writesets do not count, so it tells the member taking writes from the others.
    writes: u64,
}

fn member(ctx: &Context<'_>, node: &str) -> Result<Member, PluginError> {
    let rows = sql::query(
        ctx,
        node,
        "SELECT LOWER(VARIABLE_NAME), VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
         WHERE VARIABLE_NAME IN ('WSREP_LOCAL_STATE_COMMENT', 'WSREP_CLUSTER_STATE_UUID', \
         'WSREP_CLUSTER_SIZE', 'WSREP_LOCAL_COMMITS')",
    )?;
    let mut m = Member::default();
    for r in rows {
        let (Some(k), Some(v)) = (r.first(), r.get(1)) else {
            continue;
        };
        match k.as_str() {
            "wsrep_local_state_comment" => m.state = v.clone(),
            "wsrep_cluster_state_uuid" => m.uuid = v.clone(),
            "wsrep_cluster_size" => m.size = v.parse().unwrap_or(0),
            _ => m.writes = v.parse().unwrap_or(0),
        }
    }
    Ok(m)
}

fn nodes<'c>(ctx: &'c Context<'_>) -> Vec<&'c str> {
    ctx.nodes.iter().map(|n| n.name.as_str()).collect()
}

/// Choose the member to dump from; see the module documentation for the rule.
fn choose_source(ctx: &Context<'_>) -> Result<String, PluginError> {
    let all = nodes(ctx);
    let avoid = ctx.settings.all("avoid");
    let first: Vec<_> = all.iter().map(|n| member(ctx, n)).collect();
    let seconds: f64 = ctx.settings.parse_or("write-sample-seconds", 1.0)?;
    if let Some(n) = all
        .iter()
        .zip(&first)
        .find(|(_, m)| m.is_ok())
        .map(|(n, _)| n)
    {
        sql::query(ctx, n, &format!("SELECT SLEEP({seconds})"))?;
    }
    let mut synced = Vec::new();
    let mut why = Vec::new();
    for (n, before) in all.iter().zip(first) {
        match (before, member(ctx, n)) {
            (Ok(b), Ok(a)) if a.state == "Synced" => {
                synced.push((n.to_string(), a.writes.saturating_sub(b.writes)))
            }
            (_, Ok(a)) => why.push(format!("{n}: {}", a.state)),
            (Err(e), _) | (_, Err(e)) => why.push(format!("{n}: not answering ({e})")),
        }
    }
    ctx.info(format!(
        "Synced members and their writes in {seconds}s: {}{}",
        synced
            .iter()
            .map(|(n, w)| format!("{n} {w}"))
            .collect::<Vec<_>>()
            .join(", "),
        if why.is_empty() {
            String::new()
        } else {
            format!("; others: {}", why.join("; "))
        }
    ));
    if let Some(forced) = ctx.settings.get("source") {
        return match synced.iter().find(|(n, _)| n == forced) {
            Some(_) => Ok(forced.to_string()),
            None => Err(PluginError::Precondition(format!(
                "source `{forced}` is not a Synced member ({})",
                why.join("; ")
            ))),
        };
    }
    let usable: Vec<&(String, u64)> = synced
        .iter()
        .filter(|(n, _)| !avoid.contains(&n.as_str()))
        .collect();
    if let Some((n, _)) = usable.iter().find(|(_, w)| *w == 0) {
        return Ok(n.clone());
    }
    match usable.iter().min_by_key(|(_, w)| *w) {
        Some((n, w)) => {
            ctx.warn(format!(
                "every Synced member takes writes; dumping from {n}, which took the fewest \
                 ({w} in {seconds}s)"
            ));
            Ok(n.clone())
        }
        None => Err(PluginError::Precondition(format!(
            "no Synced member to back up from{} ({})",
            if avoid.is_empty() {
                ""
            } else {
                " outside `avoid`"
            },
            why.join("; ")
        ))),
    }
}

/// The member that bootstraps the restored cluster: `bootstrap` if set (it must take part),
/// else the backup's source if it takes part, else the first member; the choice is said.
fn bootstrap_member(ctx: &Context<'_>, all: &[&str]) -> Result<String, PluginError> {
    let members = all.join(", ");
    if let Some(forced) = ctx.settings.get("bootstrap") {
        if !all.contains(&forced) {
            return Err(PluginError::InvalidSettings(format!(
                "bootstrap `{forced}` is not a member taking part in this restore ({members})"
            )));
        }
        ctx.info(format!(
            "{forced} bootstraps the cluster (setting `bootstrap`)"
        ));
        return Ok(forced.to_string());
    }
    let first = all
        .first()
        .ok_or_else(|| PluginError::Precondition("no members".into()))?;
    match ctx.records.get(SOURCE) {
        Some(source) if all.contains(&source) => {
            ctx.info(format!(
                "{source} bootstraps the cluster (the member the backup was taken from)"
            ));
            Ok(source.to_string())
        }
        Some(source) => {
            ctx.warn(format!(
                "the backup was taken from {source}, which is not taking part in this restore; \
                 {first}, the first of the members ({members}), bootstraps the cluster"
            ));
            Ok(first.to_string())
        }
        None => {
            ctx.info(format!("{first}, the first member, bootstraps the cluster"));
            Ok(first.to_string())
        }
    }
}

/// Register the removal of the 3306 block on `node` (`None` when blocking is off).
fn firewall_undo(ctx: &Context<'_>, node: &Node) -> Result<Option<Undo>, PluginError> {
    if ctx.settings.get("block").unwrap_or("iptables") == "none" {
        return Ok(None);
    }
    let unblock = ctx
        .on_the_node(&node.name, "iptables")
        .args(firewall_args(node, "-D"));
    ctx.undo_with(&unblock, &format!("unblock 3306 on {}", node.address))
        .map(Some)
}

fn firewall_args(node: &Node, op: &str) -> Vec<String> {
    [
        op,
        "INPUT",
        "-d",
        &node.address,
        "-p",
        "tcp",
        "--dport",
        "3306",
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Block (`-I`) or unblock (`-D`) client connections to 3306 on the member's address.
fn firewall(ctx: &Context<'_>, node: &Node, op: &str) -> Result<(), PluginError> {
    ctx.run_ok(
        &ctx.on_the_node(&node.name, "iptables")
            .args(firewall_args(node, op)),
    )
    .map(drop)
}

/// Wait until `node` is Synced in a cluster of `size` (not in a dry run: nothing joins).
fn wait_synced(ctx: &Context<'_>, node: &str, size: usize) -> Result<(), PluginError> {
    if ctx.dry_run {
        return Ok(());
    }
    let limit: u64 = ctx.settings.parse_or("join-timeout-seconds", 600)?;
    let mut last = Member::default();
    for _ in 0..limit * 2 {
        if let Ok(m) = member(ctx, node) {
            if m.state == "Synced" && m.size == size {
                return Ok(());
            }
            last = m;
        }
        let _ = sql::query(ctx, node, "SELECT SLEEP(0.5)");
    }
    Err(PluginError::CommandFailed(format!(
        "{node} is not Synced in a cluster of {size} after {limit}s (state `{}`, size {})",
        last.state, last.size
    )))
}

impl Plugin for Galera {
    fn describe() -> PluginInfo {
        let info = PluginInfo::new(
            "galera",
            env!("CARGO_PKG_VERSION"),
            "A MariaDB Galera cluster: backup from an idle Synced member (optionally desynced), \
             restore by the talk's runbook (block 3306, stop, new datadirs with the old ones \
             kept, bootstrap one member, import, join the others by SST, unblock), validate that \
             every member is Synced in one cluster of the right size.",
        )
        .roles(&["controller", "galera"])
        .presets(&["controllers"])
        .after(&["filesystem", "pacemaker"])
        .setting(
            "source",
            "Back up from this member (default: an idle Synced one)",
            None,
        )
        .multi_setting("avoid", "Never back up from this member unless forced")
        .setting(
            "write-sample-seconds",
            "How long members' write counters are watched to find an idle one",
            Some("1"),
        )
        .setting(
            "desync",
            "Desync the source during the dump (wsrep_desync)",
            Some("false"),
        )
        .setting(
            "bootstrap",
            "Member that bootstraps the restored cluster (default: the backup's source)",
            None,
        )
        .multi_setting(
            "bootstrap-command",
            "Members in containers: the command that starts the server in the bootstrap \
             member's container, to which --wsrep-new-cluster is added (default: the \
             container's own command)",
        )
        .setting(
            "block",
            "`iptables` to block 3306 during restore, or `none`",
            Some("iptables"),
        )
        .setting(
            "clustercheck-user",
            "Account the load balancer's health check uses; (re)created on the new cluster \
             with PROCESS after the import",
            None,
        )
        .setting(
            "clustercheck-password",
            "Its password (sent as SQL on stdin)",
            None,
        )
        .setting(
            "join-timeout-seconds",
            "How long a member may take to become Synced",
            Some("600"),
        )
        .command(
            "iptables",
            &[
                "-I", "INPUT", "-d", "*", "-p", "tcp", "--dport", "3306", "-j", "DROP",
            ],
        )
        .command(
            "iptables",
            &[
                "-D", "INPUT", "-d", "*", "-p", "tcp", "--dport", "3306", "-j", "DROP",
            ],
        )
        .command("galera_new_cluster", &["*"])
        .command("mysql", &["-e", "SET GLOBAL wsrep_desync = OFF"])
        // The dump is the cluster's, whichever member it was taken on.
        .cluster_artifacts(&[sql::DUMP, sql::GRANTS]);
        // Members in containers: the steps around them, on their nodes (contract 2.2).
        let info = containers::bootstrap_commands(containers::commands(info));
        pcm::commands(pcm::settings(sql::commands(sql::settings(
            sql::drill::commands(info, "galera"),
        ))))
    }

    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        sql::with_credentials(ctx, || backup(ctx))
    }

    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        sql::with_credentials(ctx, || restore(ctx))
    }

    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        sql::with_credentials(ctx, || validate(ctx))
    }

    /// The cluster's dump into a throwaway (standalone) server, its tables' checksums as at
    /// backup: see `coffer_mysql_common::drill`.
    fn drill(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        sql::drill::run(ctx, None)
    }
}

fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
    let source = choose_source(ctx)?;
    let desync = ctx.settings.parse_or("desync", false)?;
    ctx.info(format!(
        "backing up from {source}{}",
        if desync {
            " (desynced during the dump)"
        } else {
            ""
        }
    ));
    let resync = if desync {
        // Registered first: if anything below fails, the host resyncs the member.
        let undo = ctx.undo_with(
            &Command::on(&source, "mysql").args(["-e", "SET GLOBAL wsrep_desync = OFF"]),
            &format!("resync {source} (wsrep_desync = OFF)"),
        )?;
        sql::execute(ctx, &source, "SET GLOBAL wsrep_desync = ON")?;
        Some(undo)
    } else {
        None
    };
    let before = sql::table_checksums(ctx, &source)?;
    let dumped = sql::dump(ctx, &source);
    if let (Some(undo), Ok(_)) = (resync, &dumped) {
        sql::execute(ctx, &source, "SET GLOBAL wsrep_desync = OFF")?;
        ctx.keep(undo);
    }
    let size = dumped?;
    ctx.info(format!(
        "{source}: dump of every database and the grants, {size} bytes"
    ));
    let mut report = BackupReport::default();
    // What a drill compares the dump with: the tables unchanged across the dump, exactly.
    let (tables, changed) = sql::record_checksums(ctx, &source, &before, &mut report)?;
    ctx.info(format!(
        "{source}: {tables} user table(s) checksummed, {changed} written during the backup"
    ));
    report.records.push(SOURCE, source);
    Ok(report)
}

fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
    let all = nodes(ctx);
    let bootstrap = bootstrap_member(ctx, &all)?;
    // Members in containers are inspected before anything changes.
    let contained = in_containers(ctx, &all, &bootstrap)?;
    let mut blocks = Vec::new();
    let mut held = None;
    let result = (|| -> Result<(), PluginError> {
        for node in &ctx.nodes {
            // The reversal goes in before the block: it is never left behind.
            if let Some(undo) = firewall_undo(ctx, node)? {
                firewall(ctx, node, "-I")?;
                blocks.push((node, undo));
            }
        }
        ctx.info("client access to 3306 blocked on every member");
        held = pcm::hold(ctx)?;
        match &contained {
            Some(members) => restore_in_containers(ctx, members, &bootstrap),
            None => restore_on_hosts(ctx, &all, &bootstrap),
        }
    })();
    if let Err(e) = result {
        // The host runs the registered reversals (the unblocks) after this returns.
        return Err(PluginError::CommandFailed(format!(
            "{e}; the host removes the 3306 blocks (see its undo report); each member's \
             previous datadir is kept as <datadir>.before-restore-{} (run `coffer restore` \
             again, or move it back)",
            ctx.run_id
        )));
    }
    if let Some(h) = held {
        pcm::give_back(ctx, h)?;
    }
    for (node, undo) in blocks {
        firewall(ctx, node, "-D")?;
        ctx.keep(undo);
    }
    ctx.info("every member Synced; client access unblocked");
    Ok(())
}

/// The members as host processes: stop every server, new datadirs (the old ones kept),
/// `galera_new_cluster` on the bootstrap member, import there, start the others (they join by
/// SST), wait until all are Synced.
fn restore_on_hosts(ctx: &Context<'_>, all: &[&str], bootstrap: &str) -> Result<(), PluginError> {
    let service = ctx.settings.get("service").unwrap_or("mariadb");
    let datadirs: Vec<Datadir> = all.iter().map(|n| Datadir::of(ctx, n)).collect();
    for d in &datadirs {
        d.service("stop")?;
    }
    for d in &datadirs {
        d.move_aside()?;
        d.create()?;
    }
    ctx.run_ok(&Command::on(bootstrap, "galera_new_cluster").arg(service))?;
    ctx.info(format!("{bootstrap}: new cluster bootstrapped"));
    import(ctx, bootstrap)?;
    for (n, d) in all.iter().zip(&datadirs) {
        if *n != bootstrap {
            d.service("start")?;
            ctx.info(format!("{n}: joined (state transfer from the cluster)"));
        }
    }
    for n in all {
        wait_synced(ctx, n, all.len())?;
    }
    Ok(())
}

/// The members' containers, inspected, when the deployment runs the plugin in containers on
/// them (TripleO's `galera-bundle-podman-N`, kolla's `mariadb`); `None` when on none. Members
/// of both kinds, or a bootstrap member whose container cannot be stood in for, are refused
/// before anything changes.
fn in_containers<'c, 'a>(
    ctx: &'c Context<'a>,
    all: &[&str],
    bootstrap: &str,
) -> Result<Option<Vec<Contained<'c, 'a>>>, PluginError> {
    let found: Vec<_> = all.iter().map(|n| (*n, ctx.container(n))).collect();
    if found.iter().all(|(_, c)| c.is_none()) {
        return Ok(None);
    }
    let bare: Vec<&str> = found
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !bare.is_empty() {
        return Err(PluginError::Precondition(format!(
            "the server runs in a container on some members but not on {}: a restore \
             handles members alike (check the container's `roles` in the deployment file)",
            bare.join(", ")
        )));
    }
    let members = found
        .into_iter()
        .filter_map(|(n, c)| c.map(|c| Contained::inspect(ctx, n, c)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(m) = members.iter().find(|m| m.node == bootstrap) {
        m.check_bootstrap(&ctx.settings.all("bootstrap-command"))?;
    }
    Ok(Some(members))
}

/// The members in containers (each node's own, found per node): every container stopped and
/// given a new datadir (the old one kept), a one-shot server with `--wsrep-new-cluster`
/// bootstraps under the bootstrap member's container name, the import goes into it, the
/// other members' containers start and join by SST, then the bootstrap member's own container
/// replaces the one-shot server and joins too. Every step registers its reversal first.
fn restore_in_containers(
    ctx: &Context<'_>,
    members: &[Contained<'_, '_>],
    bootstrap: &str,
) -> Result<(), PluginError> {
    let first = members
        .iter()
        .find(|m| m.node == bootstrap)
        .ok_or_else(|| PluginError::Precondition(format!("{bootstrap} is not a member")))?;
    let mut undo = Vec::new();
    for m in members {
        undo.extend(m.new_datadir()?);
    }
    let server = first.bootstrap_server(&ctx.settings.all("bootstrap-command"))?;
    sql::wait_until_up(ctx, bootstrap)?;
    import(ctx, bootstrap)?;
    let others: Vec<_> = members.iter().filter(|m| m.node != bootstrap).collect();
    for m in &others {
        undo.push(m.start()?);
        ctx.info(format!(
            "{}: joining (state transfer from the cluster)",
            m.node
        ));
    }
    for m in &others {
        wait_synced(ctx, &m.node, members.len())?;
    }
    if others.is_empty() {
        // Its own container would look for the other members and find none.
        for u in server {
            ctx.keep(u);
        }
        ctx.warn(format!(
            "{bootstrap} is the only member taking part: the bootstrap server keeps running as \
             {} (the member's own container is {}); replace it with the container once other \
             members have joined",
            first.container.name,
            first.aside_name()
        ));
    } else {
        first.end_bootstrap_server(server)?;
        undo.push(first.start()?);
        ctx.info(format!(
            "{bootstrap}: its own container replaces the bootstrap server and joins"
        ));
    }
    for m in members {
        wait_synced(ctx, &m.node, members.len())?;
    }
    for u in undo {
        ctx.keep(u);
    }
    Ok(())
}

/// Import the dump and grants into the new cluster on `bootstrap` (a new datadir: root over
/// the socket), then the load balancer's health-check account if one is configured.
fn import(ctx: &Context<'_>, bootstrap: &str) -> Result<(), PluginError> {
    sql::import(ctx, bootstrap, true)?;
    ctx.info(format!("{bootstrap}: databases and grants imported"));
    if let Some(user) = ctx.settings.get("clustercheck-user") {
        let password = ctx.settings.get("clustercheck-password").unwrap_or("");
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let account = format!("{}@'localhost'", quote(user));
        sql::root_execute(
            ctx,
            bootstrap,
            &format!(
                "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {pw}; \
                 ALTER USER {account} IDENTIFIED BY {pw}; \
                 GRANT PROCESS ON *.* TO {account}; FLUSH PRIVILEGES;",
                pw = quote(password)
            ),
        )?;
        ctx.info(format!("{bootstrap}: clustercheck account {user} ready"));
    }
    Ok(())
}

fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
    let all = nodes(ctx);
    let members: Vec<_> = all.iter().map(|n| member(ctx, n)).collect();
    let uuid = members
        .iter()
        .filter_map(|m| m.as_ref().ok())
        .find(|m| m.state == "Synced")
        .map(|m| m.uuid.clone())
        .unwrap_or_default();
    let mut checks = Vec::new();
    for (n, m) in all.iter().zip(members) {
        match m {
            Err(e) => checks.push(Check::new(n, "answers", false, e.to_string())),
            Ok(m) => {
                checks.push(Check::new(
                    n,
                    "Synced",
                    m.state == "Synced",
                    m.state.clone(),
                ));
                checks.push(Check::new(
                    n,
                    "one cluster",
                    !uuid.is_empty() && m.uuid == uuid,
                    m.uuid.clone(),
                ));
                checks.push(Check::new(
                    n,
                    "cluster size",
                    m.size == all.len(),
                    format!("{} of {}", m.size, all.len()),
                ));
            }
        }
    }
    Ok(checks)
}

export_plugin!(Galera);

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_sdk::testing::{Call, Harness, Reply};

    const NODES: [&str; 3] = ["g1", "g2", "g3"];
    /// Every read-only query: the member status (and the `SELECT SLEEP`s between samples).
    const QUERY: [&str; 4] = ["mysql", "-N", "-B", "-e"];
    const STATUS: &str = "g1: mysql -N -B -e SELECT LOWER(VARIABLE_NAME)";

    fn status(state: &str, size: usize, commits: u64) -> Reply {
        Reply::stdout(format!(
            "wsrep_local_state_comment\t{state}\nwsrep_cluster_state_uuid\tc0ffee\n\
             wsrep_cluster_size\t{size}\nwsrep_local_commits\t{commits}\n"
        ))
    }

    fn cluster() -> Harness {
        let mut h = Harness::new();
        for n in NODES {
            h = h.node(n, &["galera"]);
        }
        h
    }

    /// A restore of a three-member cluster whose backup was taken from g2; every member
    /// reports Synced in a cluster of three.
    fn restore_harness() -> Harness {
        cluster()
            .record(SOURCE, "g2")
            .artifact("g2", sql::DUMP, ArtifactKind::Stream, b"-- dump")
            .artifact("g2", sql::GRANTS, ArtifactKind::Stream, b"-- grants")
            .reply(&QUERY, status("Synced", 3, 0))
    }

    fn firewall(n: &str, op: &str) -> String {
        format!("{n}: iptables {op} INPUT -d {n}.test -p tcp --dport 3306 -j DROP")
    }

    #[test]
    fn backup_dumps_from_a_synced_member_outside_avoid() {
        let h = cluster()
            .setting("avoid", "g2")
            .reply_on("g1", &QUERY, status("Donor/Desynced", 3, 0))
            .reply(&QUERY, status("Synced", 3, 5))
            .reply(
                &["mysqldump", "--opt"],
                Reply::stdout("-- every database\n"),
            )
            .reply(
                &["mysqldump", "--system=users"],
                Reply::stdout("CREATE USER nova;\n"),
            );
        let report = h.backup::<Galera>().unwrap();
        // g1 is a donor, g2 is avoided: g3 is the only candidate.
        assert_eq!(report.records.get(SOURCE), Some("g3"));
        let log = h.transcript();
        // Every member is sampled twice, with the sleep in between, before anything is dumped.
        for n in NODES {
            let status = STATUS.replacen("g1", n, 1);
            assert_eq!(log.count(&status), 2, "{n} sampled twice: {log:#?}");
            assert!(log.last(&status) < log.first("capture"));
        }
        assert!(log.first("g1: mysql -N -B -e SELECT SLEEP(1)") < log.last(STATUS));
        let captures: Vec<(String, Vec<String>, String)> = h
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Capture { node, argv, name } => Some((node, argv, name)),
                _ => None,
            })
            .collect();
        assert_eq!(captures.len(), 2, "{captures:?}");
        let (node, argv, name) = &captures[0];
        assert_eq!((node.as_str(), name.as_str()), ("g3", sql::DUMP));
        for flag in [
            "--single-transaction",
            "--all-databases",
            "--routines",
            "--ignore-table=mysql.wsrep_streaming_log",
        ] {
            assert!(argv.iter().any(|a| a == flag), "{flag} missing: {argv:?}");
        }
        let (node, argv, name) = &captures[1];
        assert_eq!((node.as_str(), name.as_str()), ("g3", sql::GRANTS));
        assert_eq!(argv, &["mysqldump", "--system=users", "--insert-ignore"]);
        assert_eq!(
            h.artifact_bytes("g3", sql::DUMP).unwrap(),
            b"-- every database\n"
        );
        assert_eq!(
            h.artifact_bytes("g3", sql::GRANTS).unwrap(),
            b"CREATE USER nova;\n"
        );
        // Without `desync` nothing is changed on the member.
        assert!(!log.iter().any(|l| l.contains("wsrep_desync")), "{log:#?}");
    }

    #[test]
    fn backup_refuses_a_forced_source_that_is_not_synced() {
        let h = cluster()
            .setting("source", "g1")
            .reply_on("g1", &QUERY, status("Joining", 3, 0))
            .reply(&QUERY, status("Synced", 3, 0));
        let err = h.backup::<Galera>().unwrap_err();
        assert!(
            matches!(&err, PluginError::Precondition(m) if m.contains("`g1`") && m.contains("g1: Joining")),
            "{err:?}"
        );
        assert!(!h.transcript().iter().any(|l| l.starts_with("capture")));
    }

    #[test]
    fn desync_wraps_the_dump_and_its_reversal_stays_if_the_dump_fails() {
        let resync = "undo-push g2: mysql -e SET GLOBAL wsrep_desync = OFF";
        let on = "g2: mysql -N -B <<< SET GLOBAL wsrep_desync = ON";
        let off = "g2: mysql -N -B <<< SET GLOBAL wsrep_desync = OFF";
        let desynced = || {
            cluster()
                .setting("source", "g2")
                .setting("desync", "true")
                .reply(&QUERY, status("Synced", 3, 0))
        };

        let h = desynced();
        h.backup::<Galera>().unwrap();
        let log = h.transcript();
        let dump = log.first(&format!("capture {} g2: mysqldump", sql::DUMP));
        let grants = log.first(&format!("capture {} g2: mysqldump", sql::GRANTS));
        assert!(log.first(resync) < log.first(on), "{log:#?}");
        assert!(log.first(on) < dump && dump < grants && grants < log.first(off));
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());

        let h = desynced().reply(&["mysqldump", "--system=users"], Reply::fail(2, "lost"));
        h.backup::<Galera>().unwrap_err();
        let log = h.transcript();
        assert_eq!(log.count(off), 0, "{log:#?}");
        let pending = h.pending_undo();
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].0, "g2");
        assert_eq!(
            pending[0].1,
            ["mysql", "-e", "SET GLOBAL wsrep_desync = OFF"]
        );
    }

    #[test]
    fn restore_follows_the_runbook_in_order() {
        let h = restore_harness();
        h.restore::<Galera>().unwrap();
        let log = h.transcript();
        let each = |f: &dyn Fn(&str) -> String| -> Vec<usize> {
            NODES.iter().map(|n| log.first(&f(n))).collect()
        };
        let block = each(&|n| firewall(n, "-I"));
        let unblock_registered = each(&|n| format!("undo-push {}", firewall(n, "-D")));
        let stop = each(&|n| format!("{n}: systemctl stop mariadb"));
        let aside =
            each(&|n| format!("{n}: mv -T /var/lib/mysql /var/lib/mysql.before-restore-test-run"));
        let install = each(&|n| {
            format!("{n}: mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db")
        });
        let unblock = each(&|n| firewall(n, "-D"));
        // g2, the backup's source, bootstraps and is imported into; the others join.
        let bootstrap = log.first("g2: galera_new_cluster mariadb");
        let packet = log.first("g2: mysql -N -B <<< SET GLOBAL max_allowed_packet = 1073741824");
        let dump = log.first("feed databases.sql g2: mysql --max-allowed-packet=1G");
        let grants = log.first("feed grants.sql g2: mysql --max-allowed-packet=1G");
        let flush = "g2: mysql -N -B <<< FLUSH PRIVILEGES";
        let join = [
            log.first("g1: systemctl start mariadb"),
            log.first("g3: systemctl start mariadb"),
        ];
        let max = |v: &[usize]| *v.iter().max().unwrap();
        let min = |v: &[usize]| *v.iter().min().unwrap();

        for i in 0..NODES.len() {
            // The reversal is registered before the block goes in.
            assert!(unblock_registered[i] < block[i], "{log:#?}");
            assert!(aside[i] < install[i], "{log:#?}");
        }
        assert!(max(&block) < min(&stop), "{log:#?}");
        assert!(max(&stop) < min(&aside), "{log:#?}");
        assert!(max(&install) < bootstrap, "{log:#?}");
        assert!(
            bootstrap < packet && packet < dump && dump < grants,
            "{log:#?}"
        );
        assert!(dump < log.first(flush) && log.first(flush) < grants);
        assert!(grants < log.last(flush) && log.last(flush) < min(&join));
        // Every member is waited for (Synced in a cluster of three) before the unblock.
        for n in NODES {
            let status = STATUS.replacen("g1", n, 1);
            let waited = log.last(&status);
            assert!(max(&join) < waited && waited < min(&unblock), "{log:#?}");
        }
        assert!(max(&join) < min(&unblock));

        assert_eq!(log.count("g2: systemctl start"), 0, "{log:#?}");
        assert_eq!(log.count("g1: galera_new_cluster"), 0);
        assert_eq!(log.count("g3: galera_new_cluster"), 0);
        assert_eq!(log.count("feed"), 2, "imported once, on g2 only");
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
    }

    #[test]
    fn restore_holds_the_pacemaker_resource_inside_the_block() {
        let h = restore_harness()
            .setting("pacemaker-resource", "galera-bundle")
            .setting("pacemaker-hold", "disable");
        h.restore::<Galera>().unwrap();
        let log = h.transcript();
        let last_block = NODES
            .iter()
            .map(|n| log.first(&firewall(n, "-I")))
            .max()
            .unwrap();
        let first_unblock = NODES
            .iter()
            .map(|n| log.first(&firewall(n, "-D")))
            .min()
            .unwrap();
        let disable = log.first("g1: pcs resource disable galera-bundle --wait=600");
        let unmanage = log.first("g1: pcs resource unmanage galera-bundle");
        let first_stop = log.first("g1: systemctl stop mariadb");
        let manage = log.first("g1: pcs resource manage galera-bundle");
        let enable = log.first("g1: pcs resource enable galera-bundle");
        let refresh = log.first("g1: pcs resource refresh galera-bundle");
        let settled = log.first("g1: crm_resource --wait --timeout=600s");
        let settled_after = log.last("g1: crm_resource --wait --timeout=600s");
        let last_wait = log.last(&STATUS.replacen("g1", "g3", 1));

        assert!(log.first("undo-push g1: pcs resource enable galera-bundle") < disable);
        assert!(log.first("undo-push g1: pcs resource manage galera-bundle") < unmanage);
        assert!(last_block < disable && disable < unmanage && unmanage < first_stop);
        // Enabled, probed afresh and settled while still unmanaged, then managed: Pacemaker never
        // acts on what its monitors saw during the restore.
        assert!(last_wait < enable && enable < refresh && refresh < settled && settled < manage);
        assert!(manage < settled_after);
        assert!(manage < first_unblock, "{log:#?}");
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
    }

    /// A restore harness whose members run in per-node containers, `galera-bundle-podman-0`
    /// on g1 and so on, inspected as podman prints them: the datadir a bind mount, host
    /// networking, an image and its command.
    fn contained_harness() -> Harness {
        let mut h = restore_harness().setting("pacemaker-resource", "galera-bundle");
        for (i, n) in NODES.iter().enumerate() {
            let json = format!(
                r#"[{{"Config":{{"Image":"galera:1","Cmd":["/run-mariadbd"]}},
                "HostConfig":{{"NetworkMode":"host"}},
                "Mounts":[{{"Destination":"/var/lib/mysql","Source":"/srv/{n}"}}]}}]"#
            );
            h = h
                .container(n, "podman", &format!("galera-bundle-podman-{i}"))
                .reply_on(n, &["podman", "inspect"], Reply::stdout(json));
        }
        h
    }

    #[test]
    fn members_in_containers_bootstrap_through_a_one_shot_server_under_the_members_name() {
        let h = contained_harness();
        h.restore::<Galera>().unwrap();
        let log = h.transcript();
        let (name, aside) = (
            "galera-bundle-podman-1",
            "galera-bundle-podman-1-before-restore",
        );
        let install: Vec<usize> = (0..3)
            .map(|i| {
                log.first(&format!(
                    "{} outside: podman run --rm --volumes-from galera-bundle-podman-{i} --user \
                     root --entrypoint mariadb-install-db galera:1",
                    NODES[i]
                ))
            })
            .collect();
        // g2, the backup's source, bootstraps: a one-shot server takes its container's name.
        let rename = log.first(&format!("g2 outside: podman rename {name} {aside}"));
        let server = log.first(&format!(
            "g2 outside: podman run -d --name {name} --volumes-from {aside} --network host \
             galera:1 /run-mariadbd --wsrep-new-cluster"
        ));
        let dump = log.first("feed databases.sql g2: mysql --max-allowed-packet=1G");
        let joins = [
            log.first("g1 outside: podman start galera-bundle-podman-0"),
            log.first("g3 outside: podman start galera-bundle-podman-2"),
        ];
        let removed = log.first(&format!("g2 outside: podman rm -f -t 120 {name}"));
        let back = log.first(&format!("g2 outside: podman rename {aside} {name}"));
        let own = log.first(&format!("g2 outside: podman start {name}"));
        let manage = log.first("g1 outside: pcs resource manage galera-bundle");
        let install_last = *install.iter().max().unwrap();
        assert!(log.first("g1 outside: pcs resource unmanage galera-bundle") < install[0]);
        assert!(
            install_last < rename && rename < server && server < dump,
            "{log:#?}"
        );
        assert!(dump < joins[0] && dump < joins[1], "{log:#?}");
        assert!(joins[0].max(joins[1]) < removed, "{log:#?}");
        assert!(removed < back && back < own && own < manage, "{log:#?}");
        // The firewall and Pacemaker are the nodes', and nothing runs as on a host.
        assert_eq!(
            log.count(&firewall("g1", "-I").replacen(':', " outside:", 1)),
            1
        );
        assert_eq!(log.count("g2: galera_new_cluster"), 0);
        assert!(!log.iter().any(|l| l.contains("systemctl")), "{log:#?}");
        assert!(h.pending_undo().is_empty(), "{:?}", h.pending_undo());
    }

    #[test]
    fn a_failed_import_into_the_bootstrap_server_gives_every_container_back() {
        let h = contained_harness().reply(
            &["mysql", "--max-allowed-packet=1G"],
            Reply::fail(1, "ERROR 2013"),
        );
        h.restore::<Galera>().unwrap_err();
        let pending = h.pending_undo_lines();
        let at = |line: &str| {
            pending
                .iter()
                .position(|l| l == line)
                .unwrap_or_else(|| panic!("no `{line}` pending: {pending:#?}"))
        };
        let name = "galera-bundle-podman-1";
        // Undone newest first: the bootstrap server goes, the container gets its name back,
        // then each member's datadir and container are put back.
        let removed = at(&format!("g2 outside: podman rm -f -t 120 {name}"));
        let renamed = at(&format!(
            "g2 outside: podman rename {name}-before-restore {name}"
        ));
        let started = at(&format!("g2 outside: podman start {name}"));
        assert!(started < renamed && renamed < removed, "{pending:#?}");
        for (i, n) in NODES.iter().enumerate() {
            at(&format!(
                "{n} outside: podman start galera-bundle-podman-{i}"
            ));
        }
        assert!(
            !pending.iter().any(|l| l.contains("stop -t 120")),
            "{pending:#?}"
        );
    }

    #[test]
    fn a_failed_bootstrap_leaves_the_unblocks_to_the_host() {
        let h = restore_harness()
            .setting("pacemaker-resource", "galera-bundle")
            .reply(&["galera_new_cluster"], Reply::fail(1, "no grastate"));
        let err = h.restore::<Galera>().unwrap_err();
        assert!(
            matches!(&err, PluginError::CommandFailed(m)
                if m.contains("galera_new_cluster") && m.contains(".before-restore-test-run")),
            "{err:?}"
        );
        let log = h.transcript();
        assert_eq!(log.count("feed"), 0, "nothing imported: {log:#?}");
        assert!(!log.iter().any(|l| l.contains("systemctl start")));
        // The plugin does not unblock; the host does, from the reversals.
        for n in NODES {
            assert_eq!(log.count(&firewall(n, "-D")), 0, "{log:#?}");
        }
        let pending = h.pending_undo_lines();
        let mut want: Vec<String> = NODES.iter().map(|n| firewall(n, "-D")).collect();
        want.push("g1: pcs resource manage galera-bundle".into());
        assert_eq!(pending, want);
    }
}
