//! sbx: a rootless sandbox for untrusted commands.
//!
//! Data flows one way: command line and profiles → [`profile::ProfileFile`] (merged) →
//! [`plan::Plan`] (resolved before any fork) → [`sandbox`] (replays the plan in new
//! namespaces) under the [`supervisor`].

pub mod api;
pub mod cgroup;
pub mod cli;
pub mod diagnose;
pub mod doctor;
pub mod error;
pub mod overlay;
pub mod plan;
pub mod profile;
pub mod proxy;
pub mod sandbox;
pub mod status;
pub mod supervisor;
pub mod terminal;

pub use api::{Finished, Sandbox};
pub use error::Error;
