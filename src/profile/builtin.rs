//! The profiles shipped in `profiles/`, embedded so that the binary works on its own.

pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../profiles/default.toml")),
    ("net-off", include_str!("../../profiles/net-off.toml")),
    ("net-on", include_str!("../../profiles/net-on.toml")),
    ("strict", include_str!("../../profiles/strict.toml")),
    ("ci", include_str!("../../profiles/ci.toml")),
    ("cargo", include_str!("../../profiles/cargo.toml")),
    ("python", include_str!("../../profiles/python.toml")),
    ("node", include_str!("../../profiles/node.toml")),
    ("make", include_str!("../../profiles/make.toml")),
    ("shell", include_str!("../../profiles/shell.toml")),
    ("nest", include_str!("../../profiles/nest.toml")),
];

pub fn find(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}
