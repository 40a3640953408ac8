//! Coffer's host: loads sandboxed plugin components, gives them the capabilities they are
//! granted, and runs backup, restore and validate across a deployment's nodes.

pub mod access;
pub mod capabilities;
pub mod deployment;
pub mod dry_run;
pub mod inventory;
pub mod lock;
pub mod orchestrator;
pub mod registry;
pub mod report;
pub mod repository;
pub mod resume;
pub mod runtime;
pub mod signing;
pub mod transport;
pub mod undo;
