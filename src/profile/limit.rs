//! Setting one `[limits]` key from its text form (`memory`, `"512M"`), as the library's
//! `Sandbox::limit` and the command line's limit options do.

use std::str::FromStr;

use super::model::{Count, Enforcement, Limits};
use super::units::UnitError;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("{0:?}: expected KEY=VALUE")]
    Syntax(String),
    #[error(
        "unknown limit `{0}` (known: wall_time, kill_grace, memory, processes, open_files, \
         file_size, cpu_time, stack, core, tmpfs_size, cpus, cgroup, host_share)"
    )]
    UnknownKey(String),
    #[error("limits.{key}: {message}")]
    Value { key: String, message: String },
}

/// Splits `KEY=VALUE`.
pub fn split_assignment(kv: &str) -> Result<(&str, &str), LimitError> {
    kv.split_once('=')
        .ok_or_else(|| LimitError::Syntax(kv.to_string()))
}

fn unit<T: FromStr<Err = UnitError>>(key: &str, value: &str) -> Result<T, LimitError> {
    value.parse().map_err(|e: UnitError| LimitError::Value {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// Sets `key` of `l` to `value`, checked as a profile's value would be.
pub fn set_limit(l: &mut Limits, key: &str, value: &str) -> Result<(), LimitError> {
    let bad = |message: String| LimitError::Value {
        key: key.to_string(),
        message,
    };
    let count = || match value.trim() {
        "unlimited" => Ok(Count::Unlimited),
        v => v
            .parse::<u64>()
            .map(Count::Limit)
            .map_err(|_| bad(format!("{value:?}: expected a whole number or unlimited"))),
    };
    match key {
        "wall_time" => l.wall_time = Some(unit(key, value)?),
        "kill_grace" => l.kill_grace = Some(unit(key, value)?),
        "memory" => l.memory = Some(unit(key, value)?),
        "processes" => l.processes = Some(count()?),
        "open_files" => l.open_files = Some(count()?),
        "file_size" => l.file_size = Some(unit(key, value)?),
        "cpu_time" => l.cpu_time = Some(unit(key, value)?),
        "stack" => l.stack = Some(unit(key, value)?),
        "core" => l.core = Some(unit(key, value)?),
        "tmpfs_size" => l.tmpfs_size = Some(unit(key, value)?),
        "cpus" => {
            l.cpus = Some(
                value
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("{value:?}: expected a number of CPUs")))?,
            )
        }
        "host_share" => {
            l.host_share = Some(
                value
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("{value:?}: expected a fraction, e.g. 0.5")))?,
            )
        }
        "cgroup" => {
            l.cgroup = Some(match value {
                "required" => Enforcement::Required,
                "best-effort" => Enforcement::BestEffort,
                "off" => Enforcement::Off,
                _ => {
                    return Err(bad(format!(
                        "{value:?}: expected required, best-effort or off"
                    )));
                }
            })
        }
        _ => return Err(LimitError::UnknownKey(key.to_string())),
    }
    l.check().map_err(|(key, message)| LimitError::Value {
        key: key.trim_start_matches("limits.").to_string(),
        message,
    })
}
