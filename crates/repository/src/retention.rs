//! Retention: which Coffer snapshots a policy keeps (restic's `--keep-*` rules, applied by
//! rustic_core to the run snapshots), forgetting the others with every artifact they name, and
//! pruning the data no snapshot needs any more.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use rustic_core::repofile::{SnapshotId, StringList};
use rustic_core::{KeepOptions, PruneOptions};
use serde::{Deserialize, Serialize};

use crate::{
    ARTIFACT_LABEL, Manifest, RUN_LABEL, Repo, RepoError, Result, coffer_snapshots, deleting,
    engine, full_id,
};

/// A retention policy, restic's rules: at least one must be set. The same keys serve the
/// command line (`--keep-daily 7`) and the deployment file (`[retention] keep-daily = 7`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Retention {
    /// The newest N snapshots.
    pub keep_last: Option<u32>,
    /// The newest snapshot of each of the last N hours that have one.
    pub keep_hourly: Option<u32>,
    /// … days.
    pub keep_daily: Option<u32>,
    /// … weeks.
    pub keep_weekly: Option<u32>,
    /// … months.
    pub keep_monthly: Option<u32>,
    /// … years.
    pub keep_yearly: Option<u32>,
    /// Every snapshot younger than this, relative to the newest (`30d`, `1y 6mo`).
    pub keep_within: Option<String>,
    /// Every snapshot carrying one of these tags (each `TAG[,TAG…]`: all of them).
    #[serde(default)]
    pub keep_tag: Vec<String>,
    /// After forgetting, prune the data no snapshot needs.
    #[serde(default)]
    pub prune: bool,
    /// Per-plugin policies (`[retention.plugin.NAME]`): a plugin named here keeps its
    /// artifacts by its own rules, applied to the snapshots that hold them (`keep-daily = 14`
    /// for a nightly dump while `/etc` is kept a year); the others follow the rules above. A
    /// snapshot kept for some plugins but not for another loses that plugin's artifacts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugin: BTreeMap<String, Retention>,
}

/// A policy that cannot be applied.
fn invalid(message: String) -> RepoError {
    RepoError::Retention(message)
}

impl Retention {
    /// Whether any rule is set.
    pub fn is_set(&self) -> bool {
        self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within.is_some()
            || !self.keep_tag.is_empty()
    }

    /// Check that the policy can be applied: at least one rule, each well formed, and the
    /// same of every plugin's policy.
    pub fn check(&self) -> Result<()> {
        self.keep_options()?;
        for (name, p) in &self.plugin {
            if !p.plugin.is_empty() || p.prune {
                return Err(invalid(format!(
                    "plugin.{name}: a plugin's policy holds keep-* rules only"
                )));
            }
            p.keep_options()
                .map_err(|e| invalid(format!("plugin.{name}: {e}")))?;
        }
        Ok(())
    }

    fn keep_options(&self) -> Result<KeepOptions> {
        if !self.is_set() {
            return Err(invalid(
                "no rule: give at least one of keep-last, keep-hourly, keep-daily, keep-weekly, \
                 keep-monthly, keep-yearly, keep-within, keep-tag"
                    .into(),
            ));
        }
        let n = |v: Option<u32>| v.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
        let mut keep = KeepOptions::default()
            .keep_last(n(self.keep_last))
            .keep_hourly(n(self.keep_hourly))
            .keep_daily(n(self.keep_daily))
            .keep_weekly(n(self.keep_weekly))
            .keep_monthly(n(self.keep_monthly))
            .keep_yearly(n(self.keep_yearly));
        if let Some(w) = &self.keep_within {
            let span = jiff::Span::from_str(w).map_err(|e| {
                invalid(format!(
                    "keep-within `{w}` is not a duration (e.g. `30d`, `1y 6mo`): {e}"
                ))
            })?;
            keep = keep.keep_within(Some(span));
        }
        let tags = self
            .keep_tag
            .iter()
            .map(|t| StringList::from_str(t).map_err(|e| invalid(format!("keep-tag `{t}`: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(keep.keep_tags(tags))
    }
}

/// What a policy decided for one Coffer snapshot.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    /// Snapshot id.
    pub id: String,
    /// When it was written.
    pub time: String,
    /// Kept (else forgotten, with its artifacts).
    pub keep: bool,
    /// Why: the rules that keep it (`daily`, `last`…), or none.
    pub reasons: Vec<String>,
    /// Its artifacts.
    pub artifacts: usize,
    /// Plugins whose artifacts go while the snapshot stays (their own policy does not keep
    /// it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trimmed: Vec<String>,
}

/// What [`Repo::forget`] did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ForgetReport {
    /// Every Coffer snapshot, newest first, with the decision.
    pub snapshots: Vec<Decision>,
    /// Coffer snapshots forgotten.
    pub forgotten: usize,
    /// Their artifact snapshots forgotten.
    pub forgotten_artifacts: usize,
    /// Artifact snapshots of runs that never completed (killed or failed) forgotten too.
    pub orphans: usize,
    /// Snapshots kept without some plugins' artifacts (per-plugin policies).
    pub trimmed: usize,
    /// Nothing was changed.
    pub dry_run: bool,
}

/// What [`Repo::prune`] did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Bytes of blobs in the repository before.
    pub bytes_before: u64,
    /// Bytes of blobs after.
    pub bytes_after: u64,
    /// Pack files deleted now (unreferenced, or repacked and past the grace period).
    pub packs_deleted: u64,
    /// Pack files repacked.
    pub packs_repacked: u64,
    /// Pack files marked for deletion: removed by a prune at least 23 hours later, so that a
    /// restore reading them at the same time never loses them.
    pub packs_marked: u64,
}

impl Repo {
    /// Apply `policy` to the Coffer snapshots (the caller holds the writer lock): each
    /// snapshot the policy does not keep is forgotten with every artifact it names, as are the
    /// artifacts of runs that never completed. An artifact belongs to one run, so no kept
    /// snapshot loses one; shared data stays until [`Repo::prune`] finds it unused. With
    /// `dry_run` nothing is changed.
    pub fn forget(&self, policy: &Retention, dry_run: bool) -> Result<ForgetReport> {
        let keep = policy.keep_options()?;
        let all = self.all_snapshots()?;
        let runs: Vec<_> = all
            .iter()
            .filter(|s| s.label == RUN_LABEL)
            .cloned()
            .collect();
        let coffer = coffer_snapshots(&all)?;
        let decided = keep
            .apply(runs.clone(), &jiff::Zoned::now())
            .map_err(engine(&self.path))?;
        // Each plugin with its own policy: applied to the runs holding its artifacts.
        let mut by_plugin: BTreeMap<(String, &str), (bool, Vec<String>)> = BTreeMap::new();
        for (name, p) in &policy.plugin {
            if !coffer
                .iter()
                .any(|c| c.manifest.plugins.iter().any(|r| &r.name == name))
            {
                tracing::warn!(
                    "retention.plugin.{name}: no snapshot holds data of a plugin `{name}`; is \
                     the name right?"
                );
            }
            let holding: Vec<_> = runs
                .iter()
                .filter(|r| {
                    let id = full_id(&r.id);
                    coffer.iter().any(|c| {
                        c.id == id && c.manifest.artifacts.iter().any(|a| &a.plugin == name)
                    })
                })
                .cloned()
                .collect();
            let rules = p
                .keep_options()
                .map_err(|e| invalid(format!("plugin.{name}: {e}")))?;
            for d in rules
                .apply(holding, &jiff::Zoned::now())
                .map_err(engine(&self.path))?
            {
                let reasons = d.reasons.iter().map(|r| format!("{name}: {r}")).collect();
                by_plugin.insert((full_id(&d.snapshot.id), name.as_str()), (d.keep, reasons));
            }
        }
        let mut report = ForgetReport {
            dry_run,
            ..ForgetReport::default()
        };
        let mut doomed: Vec<SnapshotId> = Vec::new();
        let mut kept_artifacts = BTreeSet::new();
        let mut rewrite: Vec<(SnapshotId, Manifest, jiff::Zoned)> = Vec::new();
        for d in &decided {
            let id = full_id(&d.snapshot.id);
            let snap = coffer.iter().find(|c| c.id == id);
            let artifacts = snap.map(|c| c.manifest.artifacts.as_slice()).unwrap_or(&[]);
            let plugins: BTreeSet<&str> = artifacts.iter().map(|a| a.plugin.as_str()).collect();
            let mut reasons = d.reasons.clone();
            let mut kept_plugins = BTreeSet::new();
            for p in &plugins {
                // Its own policy where it has one, else the snapshot's.
                match by_plugin.get(&(id.clone(), *p)) {
                    Some((true, why)) => {
                        kept_plugins.insert(*p);
                        reasons.extend(why.iter().cloned());
                    }
                    None if d.keep => {
                        kept_plugins.insert(*p);
                    }
                    _ => {}
                }
            }
            let keep = !kept_plugins.is_empty() || (plugins.is_empty() && d.keep);
            let trimmed: Vec<String> = if keep {
                plugins
                    .difference(&kept_plugins)
                    .map(|p| p.to_string())
                    .collect()
            } else {
                Vec::new()
            };
            if keep {
                kept_artifacts.extend(
                    artifacts
                        .iter()
                        .filter(|a| kept_plugins.contains(a.plugin.as_str()))
                        .map(|a| a.snapshot.clone()),
                );
                if let (false, Some(c)) = (trimmed.is_empty(), snap) {
                    let mut m = c.manifest.clone();
                    m.artifacts
                        .retain(|a| kept_plugins.contains(a.plugin.as_str()));
                    m.plugins.retain(|p| !trimmed.contains(&p.name));
                    m.trimmed.extend(trimmed.iter().cloned());
                    rewrite.push((d.snapshot.id, m, d.snapshot.time.clone()));
                    report.trimmed += 1;
                }
            } else {
                doomed.push(d.snapshot.id);
                report.forgotten += 1;
            }
            report.snapshots.push(Decision {
                id,
                time: d.snapshot.time.timestamp().to_string(),
                keep,
                reasons,
                artifacts: artifacts.len(),
                trimmed,
            });
        }
        // Every artifact snapshot no kept run names: those of forgotten runs and orphans.
        let forgotten_runs: BTreeSet<String> = coffer
            .iter()
            .filter(|c| {
                report
                    .snapshots
                    .iter()
                    .any(|d| d.id == c.id && (!d.keep || !d.trimmed.is_empty()))
            })
            .flat_map(|c| c.manifest.artifacts.iter().map(|a| a.snapshot.clone()))
            .collect();
        for s in all.iter().filter(|s| s.label == ARTIFACT_LABEL) {
            let id = full_id(&s.id);
            if kept_artifacts.contains(&id) {
                continue;
            }
            if forgotten_runs.contains(&id) {
                report.forgotten_artifacts += 1;
            } else {
                report.orphans += 1;
            }
            doomed.push(s.id);
        }
        if !dry_run && !rewrite.is_empty() {
            // The trimmed manifest is written (at the run's own time) before the old one and
            // the trimmed artifacts go: a failure in between leaves both, never neither.
            let writer = self.writer()?;
            for (old, manifest, time) in rewrite {
                writer.commit_at(&manifest, Some(time))?;
                doomed.push(old);
            }
        }
        if !dry_run && !doomed.is_empty() {
            self.inner
                .delete_snapshots(&doomed)
                .map_err(deleting(&self.location, &self.path))?;
        }
        Ok(report)
    }

    /// Remove the data no snapshot needs (the caller holds the writer lock), through
    /// rustic_core's prune with its defaults: packs at most 5% unused after it, at most 10% of
    /// the repository repacked, and a two-phase delete for repacked packs.
    pub fn prune(&self) -> Result<PruneReport> {
        let opts = PruneOptions::default();
        let plan = self.inner.prune_plan(&opts).map_err(engine(&self.path))?;
        let size = plan.stats.size_sum();
        let report = PruneReport {
            bytes_before: size.total() + plan.stats.size_unref,
            bytes_after: size.total_after_prune(),
            packs_deleted: plan.stats.packs_unref + plan.stats.packs_to_delete.remove,
            packs_repacked: plan.stats.packs.repack,
            packs_marked: plan.stats.packs_to_delete.keep,
        };
        self.inner
            .prune(&opts, plan)
            .map_err(deleting(&self.location, &self.path))?;
        Ok(report)
    }
}
