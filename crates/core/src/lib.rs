//! Coffer's orchestration: the installed plugins ([`registry`], checked against their
//! [`signing`] keys and [`pins`]), and the runs that put them in order across a deployment's
//! nodes ([`run`]): backup, restore with its [`resume`] progress, validate, and the
//! dry run of each.
//!
//! The way of a backup: the CLI resolves a [`coffer_config::deployment::Deployment`], loads a
//! [`registry::Registry`] and builds an [`run::Coffer`], which plans the plugins,
//! calls each through `coffer_runtime`, and stores what they stream in a
//! `coffer_repository` repository.

#![deny(missing_docs)]

pub mod pins;
pub mod registry;
pub mod resume;
pub mod run;
pub mod signing;
