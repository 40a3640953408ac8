//! Coffer's configuration: the deployment file (nodes, roles, SSH, the plugins enabled with
//! their settings, grants, limits and containers) and the import of Ansible inventories
//! (TripleO's and kolla-ansible's) into one.
//!
//! [`deployment::Deployment::load`] reads and validates a deployment file; every error names
//! the file, the line and the field. [`deployment::Deployment::connect`] reaches its nodes.
//! [`inventory`] turns an Ansible inventory into a deployment file's text.

#![deny(missing_docs)]

pub mod deployment;
pub mod inventory;
