//! Where a profile entry is written, as `file:line`, for `sbx why`. The profile model keeps
//! which profile and key a value came from (`Origin`), not its position: positions are needed
//! only to answer a question, so the profile's text is read again and parsed with spans then.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::load::Loader;
use super::{ProfileError, ProfileFile};

/// One profile file a load reads, with its text.
#[derive(Clone, Debug)]
pub struct Layer {
    /// What an `Origin` calls it: a built-in's name, a file's path as given.
    pub display: String,
    /// What `file:line` calls it: `builtin:NAME.toml` for a built-in, else the path.
    pub label: String,
    pub text: String,
}

impl Loader {
    /// The profile files a load of `names` reads, in the order they are merged: each
    /// `extends` chain's parents before the profile itself, then the next name. Used after the
    /// same names loaded without error, so cycles and depth were checked there.
    pub fn layers(&self, names: &[String]) -> Result<Vec<Layer>, ProfileError> {
        let mut out = Vec::new();
        for name in names {
            self.layers_of(name, None, &mut out, 0)?;
        }
        Ok(out)
    }

    fn layers_of(
        &self,
        name: &str,
        from: Option<&Path>,
        out: &mut Vec<Layer>,
        depth: usize,
    ) -> Result<(), ProfileError> {
        if depth > super::MAX_EXTENDS_DEPTH || out.len() > super::MAX_PROFILES_READ {
            return Ok(());
        }
        let src = self.locate(name, from)?;
        let parsed: ProfileFile = Loader::parse(&src.display, &src.text)?;
        for parent in &parsed.extends {
            self.layers_of(parent, src.dir.as_deref(), out, depth + 1)?;
        }
        let label = match src.id.strip_prefix("builtin:") {
            Some(n) => format!("builtin:{n}.toml"),
            None => src.display.clone(),
        };
        out.push(Layer {
            display: src.display,
            label,
            text: src.text,
        });
        Ok(())
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The value at the dotted `key` (`filesystem.ro`), if the text sets it.
fn value_at<'a>(doc: &'a DeTable<'a>, key: &str) -> Option<&'a toml::Spanned<DeValue<'a>>> {
    let mut parts = key.split('.');
    let mut value = doc.get(parts.next()?)?;
    for part in parts {
        value = value.get_ref().as_table()?.get(part)?;
    }
    Some(value)
}

/// The line where `text` writes the entry of `key` that `wanted` accepts: an element of an
/// array (or the `src` of an array of tables, `[[filesystem.overlay]]`), or the value itself.
/// `wanted` is given the string as written, before variable expansion.
pub fn line_of(text: &str, key: &str, wanted: &dyn Fn(&str) -> bool) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let value = value_at(doc.get_ref(), key)?;
    // The offset of the string `wanted` accepts in one value.
    let accepted = |v: &toml::Spanned<DeValue>| match v.get_ref() {
        DeValue::String(s) => wanted(s).then(|| v.span().start),
        DeValue::Table(t) => t
            .get("src")
            .filter(|s| s.get_ref().as_str().is_some_and(wanted))
            .map(|s| s.span().start),
        _ => None,
    };
    let offset = match value.get_ref() {
        DeValue::Array(items) => items.iter().find_map(accepted),
        _ => accepted(value),
    };
    offset.map(|o| line_at(text, o))
}

/// The line where `text` sets `key` to anything, if it does.
pub fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    value_at(doc.get_ref(), key).map(|v| line_at(text, v.span().start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "description = \"x\"\n\
                        [filesystem]\n\
                        ro = [\"/usr\",\n  \"/etc\", \"${HOME}/.cargo\"]\n\
                        \n\
                        [network]\n\
                        mode = \"proxy\"\n\
                        allow = [\"a.example:443\"]\n\
                        [[filesystem.overlay]]\n\
                        src = \"/srv\"\n";

    #[test]
    fn finds_array_elements_by_their_written_value() {
        assert_eq!(line_of(TEXT, "filesystem.ro", &|s| s == "/usr"), Some(3));
        assert_eq!(line_of(TEXT, "filesystem.ro", &|s| s == "/etc"), Some(4));
        assert_eq!(
            line_of(TEXT, "filesystem.ro", &|s| s.starts_with("${HOME}")),
            Some(4)
        );
        assert_eq!(line_of(TEXT, "filesystem.ro", &|s| s == "/opt"), None);
        assert_eq!(line_of(TEXT, "filesystem.rw", &|_| true), None);
        assert_eq!(
            line_of(TEXT, "network.allow", &|s| s == "a.example:443"),
            Some(8)
        );
        assert_eq!(
            line_of(TEXT, "filesystem.overlay", &|s| s == "/srv"),
            Some(10)
        );
    }

    #[test]
    fn finds_scalar_keys() {
        assert_eq!(line_of_key(TEXT, "network.mode"), Some(7));
        assert_eq!(line_of(TEXT, "network.mode", &|s| s == "proxy"), Some(7));
        assert_eq!(line_of_key(TEXT, "namespaces.net"), None);
        assert_eq!(line_of_key("not [toml", "network.mode"), None);
    }

    #[test]
    fn the_default_profile_writes_usr_where_its_text_says() {
        let text = super::super::builtin::find("default").unwrap().text;
        let line = line_of(text, "filesystem.ro", &|s| s == "/usr").unwrap();
        let written = text.lines().nth(line - 1).unwrap();
        assert!(written.contains("\"/usr\""), "{written}");
    }
}
