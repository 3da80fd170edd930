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

/// The sandbox path an `ro`, `rw` or `tmpfs` entry mounts on, as written ([`lexical`]).
pub fn destination_of(entry: &str) -> String {
    lexical(BindSpec::parse(entry).dst)
}

/// `path` with its spelling evened out: no `.`, repeated or trailing `/`, so that `$PWD/.`,
/// `$PWD/` and `$PWD` name one destination when layers are merged. Symlinks and `..` are left
/// for the plan, which resolves sources on the host.
pub fn lexical(path: &str) -> String {
    let mut out = String::new();
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        out.push('/');
        out.push_str(c);
    }
    match (path.starts_with('/'), out.is_empty()) {
        (true, true) => "/".into(),
        (true, false) => out,
        (false, _) => out.trim_start_matches('/').to_string(),
    }
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
        for same in ["/w/p", "/w/p/", "/w/./p/.", "//w//p", "/x:/w/p/./"] {
            assert_eq!(destination_of(same), "/w/p", "{same}");
        }
        assert_eq!(destination_of("/"), "/");
        assert_eq!(destination_of("/w/../p"), "/w/../p");
    }
}
