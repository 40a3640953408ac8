//! A validation: each plugin checks the live service against a snapshot.

use std::sync::Arc;
use std::time::Instant;

use coffer_repository::{Manifest, PluginRecord, Repo};
use coffer_runtime::capabilities::{Phase, SnapshotSource};
use coffer_runtime::report::{Event, PluginCheck};

use super::restore::{RestoreOptions, RestoreSummary};
use super::{Coffer, RunError};
use coffer_runtime::report::{Operation, Status};

impl Coffer {
    /// Validate the deployment against snapshot `spec`: each plugin (of `opts.plugins`, all
    /// when empty) checks the live service against what the snapshot holds.
    pub async fn validate(
        &self,
        repo: Repo,
        spec: &str,
        opts: &RestoreOptions,
    ) -> Result<RestoreSummary, RunError> {
        let started = Instant::now();
        let (snap, source, records) = self.open_snapshot(repo, spec, opts).await?;
        let checks = self
            .validate_records(&records, &snap.manifest, &source, opts)
            .await?;
        Ok(RestoreSummary {
            snapshot: snap.id,
            restored: Vec::new(),
            plugins: Vec::new(),
            checks,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Call each plugin's validation against the snapshot; the checks they made, in order.
    pub(super) async fn validate_records(
        &self,
        records: &[PluginRecord],
        manifest: &Manifest,
        source: &Arc<SnapshotSource>,
        opts: &RestoreOptions,
    ) -> Result<Vec<PluginCheck>, RunError> {
        let mut checks = Vec::new();
        for record in records {
            let (plugin, ctx) = self.snapshot_context(record, manifest, opts)?;
            if !plugin.info.operations.validate || ctx.nodes.is_empty() {
                continue;
            }
            let calls = ctx.split(plugin.info.node_scoped.validate);
            self.step(
                &record.name,
                Operation::Validate,
                Status::Started,
                self.fan_detail(&record.name, &calls),
            );
            let result = self
                .fan_out(&record.name, calls, |ctx| {
                    let mut env = self.env(plugin, &ctx.nodes, &ctx.run_id);
                    env.phase = Phase::Snapshot(source.clone());
                    async move { self.runtime.validate(plugin, env, &ctx).await }
                })
                .await
                .map(|per_call| per_call.concat());
            match result {
                Ok(found) => {
                    let failed = found.iter().filter(|c| !c.ok).count();
                    self.step(
                        &record.name,
                        Operation::Validate,
                        if failed == 0 {
                            Status::Ok
                        } else {
                            Status::Failed
                        },
                        format!("{} check(s), {failed} failed", found.len()),
                    );
                    for check in found {
                        let c = PluginCheck {
                            plugin: record.name.clone(),
                            check,
                        };
                        self.reporter.report(Event::Check(c.clone()));
                        checks.push(c);
                    }
                }
                Err(e) => {
                    self.step(
                        &record.name,
                        Operation::Validate,
                        Status::Failed,
                        e.to_string(),
                    );
                    return Err(e.into());
                }
            }
        }
        Ok(checks)
    }
}
