//! Text that came from the sandbox or a profile (file names, symlink targets, host names,
//! profile values), made safe to print on a terminal: every control character, invalid UTF-8
//! byte and bidirectional override is shown as a visible escape, so that nothing the sandbox
//! wrote can move the cursor, erase a line, set the clipboard (OSC 52) or forge a line of sbx's
//! output. JSON output does not go through here: serde escapes what JSON needs and keeps the
//! rest faithful.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes shown escaped: `\n`, `\t`, `\r`, `\e` (ESC), `\a` (BEL), `\\`, `\xNN` for other C0
/// controls, DEL and invalid UTF-8, `\u{NNNN}` for C1 controls and bidirectional overrides.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a [u8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\t' => f.write_str("\\t")?,
                    '\r' => f.write_str("\\r")?,
                    '\x1b' => f.write_str("\\e")?,
                    '\x07' => f.write_str("\\a")?,
                    c if (c as u32) < 0x20 || c == '\x7f' => write!(f, "\\x{:02x}", c as u32)?,
                    c if is_c1_or_bidi(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                    c => write!(f, "{c}")?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// C1 controls (a terminal may take U+009B as CSI) and the characters that reorder text on
/// display ("Trojan Source": a name that reads differently from what it is).
fn is_c1_or_bidi(c: char) -> bool {
    matches!(c as u32, 0x80..=0x9f | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069)
}

/// `s` escaped for a terminal.
pub fn escape(s: &str) -> String {
    Escaped(s.as_bytes()).to_string()
}

/// The bytes of a name escaped for a terminal (a file name need not be UTF-8).
pub fn escape_bytes(b: &[u8]) -> String {
    Escaped(b).to_string()
}

/// A path escaped for a terminal.
pub fn escape_path(p: &Path) -> String {
    escape_os(p.as_os_str())
}

/// An OS string escaped for a terminal.
pub fn escape_os(s: &OsStr) -> String {
    Escaped(s.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(escape("src/main.rs"), "src/main.rs");
        assert_eq!(escape("café ü 日本"), "café ü 日本");
        assert_eq!(escape("a b-c_d.e~f"), "a b-c_d.e~f");
    }

    #[test]
    fn controls_are_visible() {
        assert_eq!(escape("a\nb"), "a\\nb");
        assert_eq!(escape("\x1b[2K\rD x"), "\\e[2K\\rD x");
        assert_eq!(escape("\x1b]52;c;aGk=\x07"), "\\e]52;c;aGk=\\a");
        assert_eq!(escape("tab\there"), "tab\\there");
        assert_eq!(escape("\x00\x01\x7f"), "\\x00\\x01\\x7f");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
    }

    #[test]
    fn c1_and_bidi_are_visible() {
        assert_eq!(escape("\u{9b}2K"), "\\u{9b}2K");
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }

    #[test]
    fn invalid_utf8_is_shown_as_bytes() {
        assert_eq!(escape_bytes(b"a\xffb"), "a\\xffb");
        assert_eq!(escape_bytes(b"\xc3"), "\\xc3");
        // Two names that differ only in invalid bytes stay two different strings.
        assert_ne!(escape_bytes(b"x\xfe"), escape_bytes(b"x\xff"));
    }

    #[test]
    fn an_escaped_name_cannot_be_mistaken_for_its_escape() {
        // A file literally named `a\nb` (backslash, n) is not shown like `a` newline `b`.
        assert_ne!(escape("a\\nb"), escape("a\nb"));
    }
}
