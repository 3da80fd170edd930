//! What sbx tells people about a plan: why a run failed (`failure`), and what a plan does
//! (`explain`).

mod explain;
mod failure;

pub use explain::{explain, protections};
pub use failure::{exec_failure, setup_failure, spawn_failure};
