//! The Coffer plugin SDK.
//!
//! A plugin is a type implementing [`Plugin`], registered with [`export_plugin!`]:
//!
//! ```ignore
//! use coffer_sdk::*;
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("hello", "0.1.0", "Backs up the output of `hostname`.")
//!             .command("hostname", &[])
//!     }
//!     fn backup(ctx: &Context) -> Result<BackupReport, PluginError> {
//!         for node in &ctx.nodes {
//!             ctx.capture(&Command::on(&node.name, "hostname"), "hostname")?;
//!         }
//!         Ok(BackupReport::default())
//!     }
//! }
//! export_plugin!(Hello);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2`; test it natively with
//! [`testing::Harness`], which plays the host and records what the plugin asked for.

mod context;
mod types;

#[cfg(not(target_arch = "wasm32"))]
pub mod capability;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use context::{Context, Host, Undo};
pub use types::*;

/// A backup plugin. Only `describe` is required; an operation left out reports itself as
/// unsupported.
pub trait Plugin {
    /// What the plugin is, what it accepts and what it needs from the host.
    fn describe() -> PluginInfo;

    /// Back up the service on `ctx.nodes`.
    fn backup(ctx: &Context<'_>) -> Result<BackupReport, PluginError> {
        let _ = ctx;
        Err(PluginError::Unsupported("backup".into()))
    }

    /// Restore the service from `ctx.artifacts`.
    fn restore(ctx: &Context<'_>) -> Result<(), PluginError> {
        let _ = ctx;
        Err(PluginError::Unsupported("restore".into()))
    }

    /// Check that the service works.
    fn validate(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let _ = ctx;
        Err(PluginError::Unsupported("validate".into()))
    }

    /// A restore drill (contract 2.4): restore `ctx.artifacts` into throwaway places on the
    /// drill node (`ctx.nodes`, one) under the scratch directory `ctx.target_root`, never
    /// touching the live service, and check the result against `ctx.records`. Without it the
    /// plugin is reported as not drillable.
    fn drill(ctx: &Context<'_>) -> Result<Vec<Check>, PluginError> {
        let _ = ctx;
        Err(PluginError::Unsupported("drill".into()))
    }
}

#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::guest::*;
}

#[cfg(target_arch = "wasm32")]
mod guest;

/// Register `$plugin` (a type implementing [`Plugin`]) as the component's export.
/// Expands to nothing outside wasm32, so the plugin crate also builds natively for its tests.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct CofferGuest;
            impl $crate::__private::Guest for CofferGuest {
                fn describe() -> $crate::__private::coffer::plugin::types::PluginInfo {
                    $crate::__private::describe::<$plugin>()
                }
                fn backup(
                    ctx: $crate::__private::coffer::plugin::types::Context,
                ) -> Result<
                    $crate::__private::coffer::plugin::types::BackupReport,
                    $crate::__private::coffer::plugin::types::PluginError,
                > {
                    $crate::__private::backup::<$plugin>(ctx)
                }
                fn restore(
                    ctx: $crate::__private::coffer::plugin::types::Context,
                ) -> Result<(), $crate::__private::coffer::plugin::types::PluginError> {
                    $crate::__private::restore::<$plugin>(ctx)
                }
                fn validate(
                    ctx: $crate::__private::coffer::plugin::types::Context,
                ) -> Result<
                    Vec<$crate::__private::coffer::plugin::types::Check>,
                    $crate::__private::coffer::plugin::types::PluginError,
                > {
                    $crate::__private::validate::<$plugin>(ctx)
                }
            }
            impl $crate::__private::FanOutGuest for CofferGuest {
                fn node_scoped() -> $crate::__private::coffer::plugin::types::Operations {
                    $crate::__private::node_scoped::<$plugin>()
                }
            }
            impl $crate::__private::CompatGuest for CofferGuest {
                fn restores() -> String {
                    <$plugin as $crate::Plugin>::describe().restores
                }
            }
            impl $crate::__private::ScopeGuest for CofferGuest {
                fn cluster_artifacts() -> Vec<String> {
                    <$plugin as $crate::Plugin>::describe().cluster_artifacts
                }
            }
            impl $crate::__private::DrillGuest for CofferGuest {
                fn drill(
                    ctx: $crate::__private::coffer::plugin::types::Context,
                ) -> Result<
                    Vec<$crate::__private::coffer::plugin::types::Check>,
                    $crate::__private::coffer::plugin::types::PluginError,
                > {
                    $crate::__private::drill::<$plugin>(ctx)
                }
            }
            impl $crate::__private::PresetsGuest for CofferGuest {
                fn member_of() -> Vec<String> {
                    <$plugin as $crate::Plugin>::describe().presets
                }
            }
    $crate::__private::export_world!(CofferGuest with_types_in $crate::__private);
        };
    };
}
