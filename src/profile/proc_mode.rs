//! `filesystem.proc`: where the sandbox's /proc comes from. A fresh proc is the default; a
//! container runtime's masks over /proc make the kernel refuse one, and `host` then binds the
//! /proc sbx sees, as it is.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How the sandbox gets its /proc. In a profile: `true` (fresh), `false` (off), or one of the
/// names `"fresh"`, `"host"`, `"off"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProcMode {
    /// A new proc of the sandbox's own PID namespace: `ps` shows the sandbox alone.
    Fresh,
    /// The /proc sbx sees, bound recursively with its masks, and no PID namespace: `ps` and
    /// `/dev/fd` work where the kernel refuses a fresh proc (a container's masked /proc), and
    /// the command sees the processes around it.
    Host,
    /// No /proc.
    Off,
}

impl ProcMode {
    pub fn name(self) -> &'static str {
        match self {
            ProcMode::Fresh => "fresh",
            ProcMode::Host => "host",
            ProcMode::Off => "off",
        }
    }
}

impl Serialize for ProcMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ProcMode::Fresh => s.serialize_bool(true),
            ProcMode::Off => s.serialize_bool(false),
            ProcMode::Host => s.serialize_str("host"),
        }
    }
}

struct ModeVisitor;

impl Visitor<'_> for ModeVisitor {
    type Value = ProcMode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"true, false, "fresh", "host" or "off""#)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ProcMode, E> {
        Ok(if v { ProcMode::Fresh } else { ProcMode::Off })
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ProcMode, E> {
        match v {
            "fresh" => Ok(ProcMode::Fresh),
            "host" => Ok(ProcMode::Host),
            "off" => Ok(ProcMode::Off),
            _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
        }
    }
}

impl<'de> Deserialize<'de> for ProcMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ProcMode, D::Error> {
        d.deserialize_any(ModeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct T {
        proc: ProcMode,
    }

    #[test]
    fn booleans_and_names_round_trip() {
        for (text, mode) in [
            ("proc = true", ProcMode::Fresh),
            ("proc = false", ProcMode::Off),
            ("proc = \"fresh\"", ProcMode::Fresh),
            ("proc = \"host\"", ProcMode::Host),
            ("proc = \"off\"", ProcMode::Off),
        ] {
            let t: T = toml::from_str(text).unwrap();
            assert_eq!(t.proc, mode, "{text}");
            let back: T = toml::from_str(&toml::to_string(&t).unwrap()).unwrap();
            assert_eq!(back.proc, mode);
        }
        let e = toml::from_str::<T>("proc = \"hots\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains(r#""host""#), "{e}");
        assert!(toml::from_str::<T>("proc = 1").is_err());
    }
}
