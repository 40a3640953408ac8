//! A MariaDB server in a container (TripleO's `tripleo_mysql` and `galera-bundle-podman-N`,
//! kolla's `mariadb`): what `RUNTIME inspect` tells the runbook, and the steps taken on the node
//! around the container (contract 2.2's `container`): a new datadir behind its volume, the
//! container stopped and started, and, for Galera, a one-shot server that bootstraps the
//! cluster under the member's own container name. Every step registers its reversal first.

use coffer_sdk::*;

use crate::MOVE_IF_PRESENT;

/// What `RUNTIME inspect` says of the server's container that the runbook needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Inspected {
    /// The directory on the node behind the datadir (a bind mount's source, or a named
    /// volume's directory).
    pub source: String,
    /// Its image, or (podman `--rootfs`) its root filesystem.
    pub image: Image,
    /// Its network mode (`host` for TripleO's and kolla's database containers).
    pub network: String,
    /// Its command (the arguments to the image's entrypoint).
    pub command: Vec<String>,
    /// The systemd unit that runs it, as podman labels a container a unit created
    /// (`PODMAN_SYSTEMD_UNIT`).
    pub unit: Option<String>,
}

/// Where a container's root filesystem comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Image {
    /// An image.
    Named(String),
    /// A directory on the node (podman `--rootfs`).
    Rootfs(String),
}

impl Inspected {
    /// Read `RUNTIME inspect NAME`'s JSON (podman's and docker's have the same fields here).
    pub fn parse(json: &[u8], datadir: &str, name: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| format!("cannot read the inspection of container {name}: {e}"))?;
        let c = v
            .get(0)
            .ok_or_else(|| format!("no container {name} to inspect"))?;
        let source = c["Mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["Destination"].as_str() == Some(datadir))
            .and_then(|m| m["Source"].as_str())
            .ok_or_else(|| {
                format!(
                    "the datadir {datadir} of container {name} is not a volume or a bind mount: \
                     its data lives in the container's own layer, which a restore cannot \
                     replace; use restore-mode = \"import\" (or name the datadir with the \
                     `datadir` setting)"
                )
            })?
            .to_string();
        let text = |v: &serde_json::Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
        let image = match (text(&c["Rootfs"]), text(&c["Config"]["Image"])) {
            (Some(rootfs), _) => Image::Rootfs(rootfs),
            (None, Some(image)) => Image::Named(image),
            (None, None) => {
                return Err(format!(
                    "container {name} has neither an image nor a rootfs"
                ));
            }
        };
        let command = c["Config"]["Cmd"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        Ok(Self {
            source,
            image,
            network: text(&c["HostConfig"]["NetworkMode"]).unwrap_or_default(),
            command,
            unit: text(&c["Config"]["Labels"]["PODMAN_SYSTEMD_UNIT"]),
        })
    }

    /// `run` arguments that give a one-shot container this one's root filesystem (`--rootfs`
    /// as an overlay, so nothing is written into it), then `program` (an entrypoint for an
    /// image; the first word of the command for a root filesystem).
    fn root_and(&self, program: &str) -> Vec<String> {
        match &self.image {
            Image::Rootfs(root) => vec!["--rootfs".into(), format!("{root}:O"), program.into()],
            Image::Named(image) => vec![
                "--user".into(),
                "root".into(),
                "--entrypoint".into(),
                program.into(),
                image.clone(),
            ],
        }
    }
}

/// The commands these steps need, for podman and docker.
pub fn commands(info: PluginInfo) -> PluginInfo {
    let info = ["podman", "docker"].iter().fold(info, |info, rt| {
        info.reads(rt, &["inspect", "*"])
            .command(rt, &["stop", "-t", "*", "*"])
            .command(rt, &["start", "*"])
            .command(rt, &["run", "--rm", "--volumes-from", "*", "**"])
    });
    info.command("mkdir", &["*"])
        .command("chown", &["--reference=*.before-restore-*", "*"])
        .command("chmod", &["--reference=*.before-restore-*", "*"])
}

/// The commands of [`Contained::bootstrap_server`], for podman and docker.
pub fn bootstrap_commands(info: PluginInfo) -> PluginInfo {
    ["podman", "docker"].iter().fold(info, |info, rt| {
        info.command(rt, &["rename", "*", "*"])
            .command(
                rt,
                &["run", "-d", "--name", "*", "--volumes-from", "*", "**"],
            )
            .command(rt, &["rm", "-f", "-t", "*", "*"])
    })
}

/// A server's container on its node, inspected.
pub struct Contained<'c, 'a> {
    ctx: &'c Context<'a>,
    /// The node.
    pub node: String,
    /// The container.
    pub container: Container,
    /// What its inspection says.
    pub found: Inspected,
    /// The systemd unit that runs the container, if one does: it is stopped and started
    /// through the unit (a unit with `Restart=always` would start a container stopped behind
    /// its back, on the datadir being replaced).
    pub unit: Option<String>,
    datadir: String,
}

impl<'c, 'a> Contained<'c, 'a> {
    /// Inspect the container `c` on node `n` (a read: it runs in a dry run too).
    pub fn inspect(ctx: &'c Context<'a>, n: &str, c: Container) -> Result<Self, PluginError> {
        let datadir = ctx.settings.get("datadir").unwrap_or("/var/lib/mysql");
        let inspected = ctx.run_ok(
            &Command::on(n, &c.runtime)
                .outside()
                .args(["inspect", &c.name]),
        )?;
        let found = Inspected::parse(&inspected.stdout, datadir, &c.name)
            .map_err(|e| PluginError::Precondition(format!("{n}: {e}")))?;
        // The operator's `service`, else the unit podman recorded.
        let unit = ctx
            .settings
            .get("service")
            .map(String::from)
            .or_else(|| found.unit.clone());
        ctx.info(format!(
            "{n}: the server runs in {} container {}{}, its datadir {datadir} is {} on the node",
            c.runtime,
            c.name,
            unit.as_ref()
                .map(|u| format!(" (run by systemd unit {u})"))
                .unwrap_or_default(),
            found.source
        ));
        Ok(Self {
            ctx,
            node: n.into(),
            container: c,
            found,
            unit,
            datadir: datadir.into(),
        })
    }

    /// Stop (`stop`) or start (`start`) the container: through its systemd unit when one
    /// runs it, else through the runtime.
    fn lifecycle(&self, verb: &str) -> Command {
        match (&self.unit, verb) {
            (Some(unit), _) => self.on_node("systemctl").args([verb, unit.as_str()]),
            (None, "stop") => self.runtime(&["stop", "-t", "120", &self.container.name]),
            (None, _) => self.runtime(&[verb, &self.container.name]),
        }
    }

    /// `program` on the node itself, outside the container.
    fn on_node(&self, program: &str) -> Command {
        Command::on(&self.node, program).outside()
    }

    /// The container runtime on the node, with `args`.
    fn runtime(&self, args: &[&str]) -> Command {
        self.on_node(&self.container.runtime)
            .args(args.iter().copied())
    }

    /// Stop the container, move the directory behind its datadir aside (never deleted),
    /// create a new one with the old one's owner and mode and initialise it with a one-shot
    /// container of the same root filesystem and volumes (`RUNTIME run --rm --volumes-from
    /// NAME … mariadb-install-db`), as kolla's and TripleO's bootstrap containers do. Returns
    /// the reversals registered: start the container again, put the old datadir back, keep
    /// the new one as `.failed-restore-<run>`.
    pub fn new_datadir(&self) -> Result<Vec<Undo>, PluginError> {
        let (ctx, name) = (self.ctx, self.container.name.as_str());
        let dir = self.found.source.as_str();
        let aside = format!("{dir}.before-restore-{}", ctx.run_id);
        let failed = format!("{dir}.failed-restore-{}", ctx.run_id);
        let mut undo = vec![ctx.undo_with(&self.lifecycle("start"), "start the container again")?];
        ctx.run_ok(&self.lifecycle("stop"))?;
        undo.push(
            ctx.undo_with(
                &self
                    .on_node("sh")
                    .args(MOVE_IF_PRESENT)
                    .args(["undo", &aside, dir]),
                "put the previous datadir back",
            )?,
        );
        ctx.run_ok(&self.on_node("mv").args(["-T", dir, &aside]))?;
        ctx.info(format!(
            "{}: the old datadir {} kept at {aside}",
            self.node,
            if ctx.dry_run { "would be" } else { "is" }
        ));
        undo.push(
            ctx.undo_with(
                &self
                    .on_node("sh")
                    .args(MOVE_IF_PRESENT)
                    .args(["undo", dir, &failed]),
                &format!("keep the failed datadir as {failed}"),
            )?,
        );
        ctx.run_ok(&self.on_node("mkdir").arg(dir))?;
        for program in ["chown", "chmod"] {
            ctx.run_ok(
                &self
                    .on_node(program)
                    .args([format!("--reference={aside}"), dir.to_string()]),
            )?;
        }
        let install = self
            .runtime(&["run", "--rm", "--volumes-from", name])
            .args(self.found.root_and("mariadb-install-db"))
            .args([
                "--user=mysql".to_string(),
                format!("--datadir={}", self.datadir),
                "--skip-test-db".to_string(),
            ]);
        ctx.run_ok(&install)?;
        Ok(undo)
    }

    /// Start the container (its reversal, registered first, stops it again); through its unit
    /// when one runs it.
    pub fn start(&self) -> Result<Undo, PluginError> {
        let undo = self
            .ctx
            .undo_with(&self.lifecycle("stop"), "stop the restored container")?;
        self.ctx.run_ok(&self.lifecycle("start"))?;
        Ok(undo)
    }

    /// Refuse, before anything changes, a container [`Contained::bootstrap_server`] cannot
    /// stand in for: the bootstrap server must have the member's address (host networking,
    /// as TripleO's and kolla's database containers have) and a command to add
    /// `--wsrep-new-cluster` to.
    pub fn check_bootstrap(&self, command: &[&str]) -> Result<(), PluginError> {
        let name = &self.container.name;
        if self.found.network != "host" {
            return Err(PluginError::Precondition(format!(
                "{}: container {name} has network mode `{}`; the server that bootstraps the \
                 restored cluster runs in a one-shot container beside it and must have the \
                 member's address, which only host networking gives (TripleO and kolla use it)",
                self.node, self.found.network
            )));
        }
        if command.is_empty() && self.found.command.is_empty() {
            return Err(PluginError::InvalidSettings(format!(
                "{}: container {name} has no command to add --wsrep-new-cluster to; name the \
                 server's command with the `bootstrap-command` setting",
                self.node
            )));
        }
        Ok(())
    }

    /// The container's name while a bootstrap server stands in for it.
    pub fn aside_name(&self) -> String {
        format!("{}-before-restore", self.container.name)
    }

    /// Bootstrap a new cluster on this member, as kolla-ansible's recovery does: with the
    /// container stopped and its new datadir initialised, the container is renamed aside and
    /// a one-shot server of the same root filesystem, volumes and (host) network, started
    /// with `--wsrep-new-cluster`, takes its name — so every client command of the runbook
    /// reaches it — until [`Contained::end_bootstrap_server`]. `command` replaces the
    /// container's own command (`bootstrap-command`); `--wsrep-new-cluster` is added to it.
    pub fn bootstrap_server(&self, command: &[&str]) -> Result<Vec<Undo>, PluginError> {
        let (ctx, name) = (self.ctx, self.container.name.as_str());
        let aside = self.aside_name();
        let mut undo = vec![ctx.undo_with(
            &self.runtime(&["rename", &aside, name]),
            &format!("give container {name} its name back"),
        )?];
        ctx.run_ok(&self.runtime(&["rename", name, &aside]))?;
        undo.push(ctx.undo_with(
            &self.runtime(&["rm", "-f", "-t", "120", name]),
            "remove the bootstrap server",
        )?);
        let mut command: Vec<String> = if command.is_empty() {
            self.found.command.clone()
        } else {
            command.iter().map(|s| s.to_string()).collect()
        };
        command.push("--wsrep-new-cluster".into());
        let root = match &self.found.image {
            Image::Rootfs(root) => vec!["--rootfs".into(), format!("{root}:O")],
            Image::Named(image) => vec![image.clone()],
        };
        ctx.run_ok(
            &self
                .runtime(&["run", "-d", "--name", name, "--volumes-from", &aside])
                .args(["--network", "host"])
                .args(root)
                .args(command),
        )?;
        ctx.info(format!(
            "{}: a one-shot server bootstraps the cluster as {name} (the container is {aside} \
             meanwhile)",
            self.node
        ));
        Ok(undo)
    }

    /// Stop and remove the bootstrap server and give the container its name back; the
    /// reversals of [`Contained::bootstrap_server`] are no longer needed.
    pub fn end_bootstrap_server(&self, undo: Vec<Undo>) -> Result<(), PluginError> {
        let name = self.container.name.as_str();
        self.ctx
            .run_ok(&self.runtime(&["rm", "-f", "-t", "120", name]))?;
        self.ctx
            .run_ok(&self.runtime(&["rename", &self.aside_name(), name]))?;
        for u in undo {
            self.ctx.keep(u);
        }
        Ok(())
    }
}
