//! sbx: a rootless sandbox for untrusted commands.
//!
//! Data flows one way: command line and profiles → [`profile::ProfileFile`] (merged) →
//! [`plan::Plan`] (resolved before any fork) → `sandbox` (replays the plan in new namespaces)
//! under the `supervisor` → [`report::RunStatus`]. [`Sandbox`] is the library's entry point.
//!
//! The layers, bottom to top; each module imports only from the ones below it:
//! `sys` (every raw system call), [`exit`] (the exit-code contract), [`text`] (what is
//! printed of the sandbox's and the profiles' strings) and [`hostfile`] (the files a run
//! writes on the host, opened before it); the leaves
//! [`profile`], [`proxy`], [`overlay`] and [`cgroup`]; [`plan`]; `sandbox` (the processes
//! inside); [`egress`] (the sandbox's connections out, made by sbx); `diagnose` (failures and
//! plans in words); [`error`]; `supervisor` (the process outside); [`report`]; [`api`];
//! `doctor`; [`cli`].

#![deny(unsafe_code)]

pub mod api;
pub mod cgroup;
#[doc(hidden)]
pub mod cli;
pub(crate) mod diagnose;
pub(crate) mod doctor;
pub mod egress;
pub mod error;
pub mod exit;
pub mod hostfile;
pub mod intercept;
pub mod learn;
pub mod overlay;
pub mod plan;
pub mod profile;
pub mod proxy;
pub mod report;
pub(crate) mod sandbox;
pub(crate) mod supervisor;
pub(crate) mod sys;
pub mod text;

pub use api::{Finished, LimitError, Sandbox};
pub use error::Error;
pub use supervisor::Supervision;
