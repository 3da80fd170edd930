//! Setting one `[limits]` key from its text form (`memory`, `"512M"`), as the library's
//! `Sandbox::limit` and the command line's limit options do; and which keys a user set.

use std::collections::BTreeSet;
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

/// Every `[limits]` key.
pub const KEYS: [&str; 13] = [
    "wall_time",
    "kill_grace",
    "memory",
    "processes",
    "open_files",
    "file_size",
    "cpu_time",
    "stack",
    "core",
    "tmpfs_size",
    "cpus",
    "cgroup",
    "host_share",
];

/// The `[limits]` keys a user set (in a profile file of their own, on the command line or
/// through the library), as opposed to those a built-in profile set: a user's limit that cannot
/// be enforced as asked is a warning, a built-in default's is a note for -v and the run
/// report. Equality ignores it, as it does origins: a profile shown and loaded back compares
/// equal.
#[derive(Clone, Debug, Default)]
pub struct ExplicitKeys(BTreeSet<&'static str>);

impl PartialEq for ExplicitKeys {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl ExplicitKeys {
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains(key)
    }

    fn insert(&mut self, key: &str) {
        if let Some(k) = KEYS.iter().find(|k| **k == key) {
            self.0.insert(k);
        }
    }

    /// Each key is as explicit as the layer whose value wins: `over`'s where it sets one.
    pub fn merged(base: &Limits, over: &Limits) -> ExplicitKeys {
        let over_set = over.keys_set();
        let mut out = ExplicitKeys::default();
        for key in KEYS {
            let from = if over_set.contains(&key) { over } else { base };
            if from.explicit.contains(key) {
                out.insert(key);
            }
        }
        out
    }
}

impl Limits {
    /// The keys this layer sets.
    pub fn keys_set(&self) -> Vec<&'static str> {
        let set = [
            self.wall_time.is_some(),
            self.kill_grace.is_some(),
            self.memory.is_some(),
            self.processes.is_some(),
            self.open_files.is_some(),
            self.file_size.is_some(),
            self.cpu_time.is_some(),
            self.stack.is_some(),
            self.core.is_some(),
            self.tmpfs_size.is_some(),
            self.cpus.is_some(),
            self.cgroup.is_some(),
            self.host_share.is_some(),
        ];
        KEYS.iter()
            .zip(set)
            .filter_map(|(k, set)| set.then_some(*k))
            .collect()
    }

    /// Marks every key this layer sets as the user's (a profile file that is not built in).
    pub fn mark_explicit(&mut self) {
        for key in self.keys_set() {
            self.explicit.insert(key);
        }
    }
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
    l.explicit.insert(key);
    l.check().map_err(|(key, message)| LimitError::Value {
        key: key.trim_start_matches("limits.").to_string(),
        message,
    })
}
