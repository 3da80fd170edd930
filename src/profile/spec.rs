//! The `SRC[:DST][?]` syntax of bind entries.

/// A parsed bind entry. `dst` equals `src` when no destination is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindSpec<'a> {
    pub src: &'a str,
    pub dst: &'a str,
    /// A trailing `?`: skip the entry when the source is missing.
    pub optional: bool,
}

impl<'a> BindSpec<'a> {
    pub fn parse(entry: &'a str) -> BindSpec<'a> {
        let (body, optional) = match entry.strip_suffix('?') {
            Some(b) => (b, true),
            None => (entry, false),
        };
        let (src, dst) = body.split_once(':').unwrap_or((body, body));
        BindSpec { src, dst, optional }
    }
}

/// The sandbox path an `ro`, `rw` or `tmpfs` entry mounts on.
pub fn destination_of(entry: &str) -> &str {
    BindSpec::parse(entry).dst.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_forms() {
        assert_eq!(
            BindSpec::parse("/a"),
            BindSpec {
                src: "/a",
                dst: "/a",
                optional: false
            }
        );
        assert_eq!(
            BindSpec::parse("/a:/b?"),
            BindSpec {
                src: "/a",
                dst: "/b",
                optional: true
            }
        );
        assert_eq!(destination_of("/opt/?"), "/opt");
    }
}
