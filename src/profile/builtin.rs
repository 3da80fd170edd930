//! The profiles shipped in `profiles/`, embedded so that the binary works on its own: each as
//! written, and as the JSON the build script converted it to, which is what a start parses
//! (see src/build.rs).

/// One built-in profile.
pub struct Builtin {
    pub name: &'static str,
    /// The TOML as written in `profiles/`.
    pub text: &'static str,
    /// The same profile as JSON.
    pub json: &'static str,
}

macro_rules! builtin {
    ($name:literal) => {
        Builtin {
            name: $name,
            text: include_str!(concat!("../../profiles/", $name, ".toml")),
            json: include_str!(concat!(env!("OUT_DIR"), "/profiles/", $name, ".json")),
        }
    };
}

pub const BUILTIN: &[Builtin] = &[
    builtin!("default"),
    builtin!("net-off"),
    builtin!("net-on"),
    builtin!("strict"),
    builtin!("ci"),
    builtin!("cargo"),
    builtin!("python"),
    builtin!("node"),
    builtin!("make"),
    builtin!("shell"),
    builtin!("nest"),
];

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTIN.iter().find(|b| b.name == name)
}
