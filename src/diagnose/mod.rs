//! What sbx tells people about a plan: why a run failed (`failure`; `environment` names what
//! the environment did, from the facts `host` reads; `interp` names a missing interpreter), and
//! what a plan does (`explain`), what it would let a command do (`why`), and what it refused
//! an observed run (`denials`).

pub mod denials;
mod environment;
mod explain;
mod failure;
pub mod host;
mod interp;
pub mod why;
mod why_net;

pub use environment::apparmor_profile;
pub use explain::{explain, protections};
pub use failure::{exec_failure, setup_failure, skipped, spawn_failure};
