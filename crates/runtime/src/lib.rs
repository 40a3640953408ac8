//! The plugin runtime: the wasmtime engine, the component cache, the limits a call runs
//! under, the contract versions a plugin can be built against, and the capabilities the host
//! gives a plugin (exec, stream, log, undo), each checked against the plugin's declaration and
//! the operator's grant.
//!
//! Runtime and capabilities live together because a plugin call's store data *is* the host
//! state the capabilities serve ([`capabilities::HostState`]). Make one [`Runtime`] per
//! process, [`Runtime::load`] each plugin component into a [`LoadedPlugin`], build the
//! [`capabilities::OperationEnv`] of a call with [`Runtime::env`], then call
//! [`Runtime::backup`], [`Runtime::restore`] or [`Runtime::validate`] with a
//! [`CallContext`]. Each contract major has its module in [`contract`]; plugins built
//! against 1.x are served through [`contract::v1`].
//!
//! What a call reports goes to a [`report::Reporter`]; what a dry run would have changed is
//! recorded in a [`dry_run::DryRun`]; the reversals plugins register live on an
//! [`undo::UndoStack`].

#![deny(missing_docs)]

mod cache;
pub mod capabilities;
mod container;
pub mod contract;
pub mod dry_run;
mod engine;
pub mod limits;
pub mod report;
pub mod undo;

pub use container::ContainerSpec;
pub use engine::*;
