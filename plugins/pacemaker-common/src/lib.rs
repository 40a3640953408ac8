//! What the pacemaker plugin offers the others: keep Pacemaker's hands off a resource while a
//! plugin restores it. `hold` unmanages it (Pacemaker stops acting on it; with `disable` it is
//! stopped everywhere first) after registering the reverse with the host, so a failed run puts
//! it back under Pacemaker; `give_back` has it probed afresh, manages it again once the cluster
//! has settled and forgets the reversal.

use coffer_sdk::*;

/// The settings a plugin offering this accepts.
pub fn settings(info: PluginInfo) -> PluginInfo {
    info.setting(
        "pacemaker-resource",
        "The Pacemaker resource that runs this service (TripleO: galera-bundle); held during \
         the restore",
        None,
    )
    .setting(
        "pacemaker-hold",
        "`unmanage` (Pacemaker leaves it alone) or `disable` (stopped everywhere, then unmanaged)",
        Some("unmanage"),
    )
    .setting(
        "pacemaker-node",
        "The node to run pcs on (default: the first)",
        None,
    )
}

/// The commands it needs.
pub fn commands(info: PluginInfo) -> PluginInfo {
    info.command("pcs", &["resource", "unmanage", "*"])
        .command("pcs", &["resource", "manage", "*"])
        .command("pcs", &["resource", "disable", "*", "--wait=*"])
        .command("pcs", &["resource", "enable", "*"])
        .command("pcs", &["resource", "refresh", "*"])
        .command("crm_resource", &["--wait", "--timeout=*"])
}

/// A resource held away from Pacemaker.
pub struct Held {
    node: String,
    resource: String,
    disabled: bool,
    undo: Vec<Undo>,
}

/// `pcs resource ARGS` on `node`: on the node itself where the plugin's commands run in a
/// container there (Pacemaker runs on the node, not in the service's container).
fn pcs(ctx: &Context<'_>, node: &str, args: &[&str]) -> Command {
    ctx.on_the_node(node, "pcs")
        .arg("resource")
        .args(args.iter().copied())
}

/// `crm_resource --wait`: until the cluster has no action left to take (the probes after a
/// refresh done, a recovery finished), ten minutes at most.
fn settle(ctx: &Context<'_>, node: &str) -> Command {
    ctx.on_the_node(node, "crm_resource")
        .arg("--wait")
        .arg("--timeout=600s")
}

/// Hold the configured resource, if any (`None` when the service is not under Pacemaker).
pub fn hold(ctx: &Context<'_>) -> Result<Option<Held>, PluginError> {
    let Some(resource) = ctx.settings.get("pacemaker-resource") else {
        return Ok(None);
    };
    let node = match ctx.settings.get("pacemaker-node") {
        Some(n) => n.to_string(),
        None => ctx
            .nodes
            .first()
            .map(|n| n.name.clone())
            .ok_or_else(|| PluginError::Precondition("no node to run pcs on".into()))?,
    };
    let disabled = ctx.settings.get("pacemaker-hold") == Some("disable");
    let mut undo = Vec::new();
    if disabled {
        undo.push(ctx.undo_with(
            &pcs(ctx, &node, &["enable", resource]),
            &format!("enable {resource}"),
        )?);
        ctx.run_ok(&pcs(ctx, &node, &["disable", resource, "--wait=600"]))?;
    }
    undo.push(ctx.undo_with(
        &pcs(ctx, &node, &["manage", resource]),
        &format!("give {resource} back to Pacemaker"),
    )?);
    ctx.run_ok(&pcs(ctx, &node, &["unmanage", resource]))?;
    ctx.info(format!(
        "{resource}: Pacemaker leaves it alone during the restore"
    ));
    Ok(Some(Held {
        node,
        resource: resource.to_string(),
        disabled,
        undo,
    }))
}

/// Give the resource back: enabled if it was disabled, its whole operation history forgotten
/// and its state probed again while Pacemaker still leaves it alone, the cluster settled, then
/// managed and settled again. In that order: managed while a monitor's failure from the restore
/// is still on record, Pacemaker recovers it — restarting a member that had just come back.
/// (`cleanup` is not enough: it clears the fail counts, but the failed monitor's result can stay
/// in the history until the next probe, and the scheduler acts on it.)
pub fn give_back(ctx: &Context<'_>, held: Held) -> Result<(), PluginError> {
    let r = held.resource.as_str();
    if held.disabled {
        ctx.run_ok(&pcs(ctx, &held.node, &["enable", r]))?;
    }
    ctx.run_ok(&pcs(ctx, &held.node, &["refresh", r]))?;
    ctx.run_ok(&settle(ctx, &held.node))?;
    ctx.run_ok(&pcs(ctx, &held.node, &["manage", r]))?;
    ctx.run_ok(&settle(ctx, &held.node))?;
    for u in held.undo {
        ctx.keep(u);
    }
    ctx.info(format!("{r}: back under Pacemaker"));
    Ok(())
}
