//! The contract versions a plugin can be built against, one module per major: [`v2`], the
//! current one, called directly; [`v1`], frozen at 1.3, whose values are converted into 2.x
//! types (`From`) so that the rest of the host only ever sees the newest contract.
//!
//! To add an export to the contract: declare it in `wit/plugin.wit`, find it in
//! `Exports::new` (optional exports with `.ok()`), bind it in `Exports::bind`, and give
//! `Bound` a typed call for it that answers for plugins that lack it (every 1.x plugin).

pub mod v1;
pub mod v2;

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use crate::capabilities::HostState;
use v1::exports::coffer::plugin as v1x;
use v2::exports::coffer::plugin as v2x;
use v2::types;

/// A loaded plugin's exports, by the contract major it was built against.
pub(crate) enum Exports {
    /// Built against 2.x: called directly.
    V2 {
        handler: v2x::handler::GuestIndices,
        /// Present when the component exports `fan-out`.
        fan_out: Option<v2x::fan_out::GuestIndices>,
        /// Present when the component exports `compat`.
        compat: Option<v2x::compat::GuestIndices>,
        /// Present when the component exports `scope` (2.1 and later).
        scope: Option<v2x::scope::GuestIndices>,
        /// Present when the component exports `presets` (2.3 and later).
        presets: Option<v2x::presets::GuestIndices>,
        /// Present when the component exports `drill` (2.4 and later).
        drill: Option<v2x::drill::GuestIndices>,
    },
    /// Built against the frozen 1.x: called through [`v1`]'s conversions.
    V1 {
        handler: v1x::handler::GuestIndices,
        /// Present when the component exports `fan-out` (1.1 and later).
        fan_out: Option<v1x::fan_out::GuestIndices>,
        /// Present when the component exports `compat` (1.3 and later).
        compat: Option<v1x::compat::GuestIndices>,
    },
}

impl Exports {
    /// Find the exports of contract `major` in a linked component; its `handler` must match.
    pub(crate) fn new(pre: &InstancePre<HostState>, major: u64) -> wasmtime::Result<Self> {
        Ok(if major == 2 {
            Self::V2 {
                handler: v2x::handler::GuestIndices::new(pre)?,
                fan_out: v2x::fan_out::GuestIndices::new(pre).ok(),
                compat: v2x::compat::GuestIndices::new(pre).ok(),
                scope: v2x::scope::GuestIndices::new(pre).ok(),
                presets: v2x::presets::GuestIndices::new(pre).ok(),
                drill: v2x::drill::GuestIndices::new(pre).ok(),
            }
        } else {
            Self::V1 {
                handler: v1x::handler::GuestIndices::new(pre)?,
                fan_out: v1x::fan_out::GuestIndices::new(pre).ok(),
                compat: v1x::compat::GuestIndices::new(pre).ok(),
            }
        })
    }

    /// Whether it is served through the 1.x adapter.
    pub(crate) fn adapted(&self) -> bool {
        matches!(self, Self::V1 { .. })
    }

    /// Whether it exports `fan-out` (it may be called one node at a time).
    pub(crate) fn has_fan_out(&self) -> bool {
        match self {
            Self::V2 { fan_out, .. } => fan_out.is_some(),
            Self::V1 { fan_out, .. } => fan_out.is_some(),
        }
    }

    /// Whether it exports `compat` (it says which versions' artifacts it restores).
    pub(crate) fn has_compat(&self) -> bool {
        match self {
            Self::V2 { compat, .. } => compat.is_some(),
            Self::V1 { compat, .. } => compat.is_some(),
        }
    }

    /// Whether it exports `scope` (it names its cluster-scoped artifacts).
    pub(crate) fn has_scope(&self) -> bool {
        matches!(self, Self::V2 { scope: Some(_), .. })
    }

    /// Whether it exports `presets` (it names the presets it belongs to).
    pub(crate) fn has_presets(&self) -> bool {
        matches!(
            self,
            Self::V2 {
                presets: Some(_),
                ..
            }
        )
    }

    /// The exports of `instance`, ready to call.
    pub(crate) fn bind(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
    ) -> wasmtime::Result<Bound> {
        Ok(match self {
            Self::V2 {
                handler,
                fan_out,
                compat,
                scope,
                presets,
                drill,
            } => Bound::V2 {
                handler: handler.load(&mut *store, instance)?,
                fan_out: fan_out
                    .as_ref()
                    .map(|f| f.load(&mut *store, instance))
                    .transpose()?,
                compat: compat
                    .as_ref()
                    .map(|c| c.load(&mut *store, instance))
                    .transpose()?,
                scope: scope
                    .as_ref()
                    .map(|c| c.load(&mut *store, instance))
                    .transpose()?,
                presets: presets
                    .as_ref()
                    .map(|c| c.load(&mut *store, instance))
                    .transpose()?,
                drill: drill
                    .as_ref()
                    .map(|c| c.load(&mut *store, instance))
                    .transpose()?,
            },
            Self::V1 {
                handler,
                fan_out,
                compat,
            } => Bound::V1 {
                handler: handler.load(&mut *store, instance)?,
                fan_out: fan_out
                    .as_ref()
                    .map(|f| f.load(&mut *store, instance))
                    .transpose()?,
                compat: compat
                    .as_ref()
                    .map(|c| c.load(&mut *store, instance))
                    .transpose()?,
            },
        })
    }
}

/// A plugin's exports bound to one instance: each call takes and returns 2.x types.
pub(crate) enum Bound {
    /// Contract 2.x.
    V2 {
        handler: v2x::handler::Guest,
        fan_out: Option<v2x::fan_out::Guest>,
        compat: Option<v2x::compat::Guest>,
        scope: Option<v2x::scope::Guest>,
        presets: Option<v2x::presets::Guest>,
        drill: Option<v2x::drill::Guest>,
    },
    /// Contract 1.x.
    V1 {
        handler: v1x::handler::Guest,
        fan_out: Option<v1x::fan_out::Guest>,
        compat: Option<v1x::compat::Guest>,
    },
}

/// What a plugin operation returns.
pub(crate) type Outcome<T> = wasmtime::Result<Result<T, types::PluginError>>;

impl Bound {
    /// `describe`.
    pub(crate) async fn describe(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<types::PluginInfo> {
        match self {
            Self::V2 { handler, .. } => handler.call_describe(store).await,
            Self::V1 { handler, .. } => handler.call_describe(store).await.map(Into::into),
        }
    }

    /// `fan-out.node-scoped`: the operations it does one node at a time (none without it).
    pub(crate) async fn node_scoped(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<types::Operations> {
        match self {
            Self::V2 {
                fan_out: Some(f), ..
            } => f.call_node_scoped(store).await,
            Self::V1 {
                fan_out: Some(f), ..
            } => f.call_node_scoped(store).await.map(Into::into),
            _ => Ok(types::Operations::empty()),
        }
    }

    /// `compat.restores`: the versions whose artifacts it restores (empty without it).
    pub(crate) async fn restores(&self, store: &mut Store<HostState>) -> wasmtime::Result<String> {
        match self {
            Self::V2 {
                compat: Some(c), ..
            } => c.call_restores(store).await,
            Self::V1 {
                compat: Some(c), ..
            } => c.call_restores(store).await,
            _ => Ok(String::new()),
        }
    }

    /// `scope.cluster-artifacts`: globs of its cluster-scoped artifacts (none without it).
    pub(crate) async fn cluster_artifacts(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Vec<String>> {
        match self {
            Self::V2 { scope: Some(s), .. } => s.call_cluster_artifacts(store).await,
            _ => Ok(Vec::new()),
        }
    }

    /// `presets.member-of`: the presets it belongs to (none without it).
    pub(crate) async fn presets(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Vec<String>> {
        match self {
            Self::V2 {
                presets: Some(p), ..
            } => p.call_member_of(store).await,
            _ => Ok(Vec::new()),
        }
    }

    /// `drill.drill`; `None` when the plugin does not export it.
    pub(crate) async fn drill(
        &self,
        store: &mut Store<HostState>,
        ctx: &types::Context,
    ) -> wasmtime::Result<Option<Result<Vec<types::Check>, types::PluginError>>> {
        match self {
            Self::V2 { drill: Some(d), .. } => d.call_drill(store, ctx).await.map(Some),
            _ => Ok(None),
        }
    }

    /// `backup`.
    pub(crate) async fn backup(
        &self,
        store: &mut Store<HostState>,
        ctx: &types::Context,
    ) -> Outcome<types::BackupReport> {
        match self {
            Self::V2 { handler, .. } => handler.call_backup(store, ctx).await,
            Self::V1 { handler, .. } => handler
                .call_backup(store, &ctx.into())
                .await
                .map(|r| r.map(Into::into).map_err(Into::into)),
        }
    }

    /// `restore`.
    pub(crate) async fn restore(
        &self,
        store: &mut Store<HostState>,
        ctx: &types::Context,
    ) -> Outcome<()> {
        match self {
            Self::V2 { handler, .. } => handler.call_restore(store, ctx).await,
            Self::V1 { handler, .. } => handler
                .call_restore(store, &ctx.into())
                .await
                .map(|r| r.map_err(Into::into)),
        }
    }

    /// `validate`.
    pub(crate) async fn validate(
        &self,
        store: &mut Store<HostState>,
        ctx: &types::Context,
    ) -> Outcome<Vec<types::Check>> {
        match self {
            Self::V2 { handler, .. } => handler.call_validate(store, ctx).await,
            Self::V1 { handler, .. } => handler.call_validate(store, &ctx.into()).await.map(|r| {
                r.map(|checks| checks.into_iter().map(Into::into).collect())
                    .map_err(Into::into)
            }),
        }
    }
}
