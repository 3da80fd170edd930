//! The caller's name and home from `/etc/passwd`, read as a file. sbx is linked statically:
//! glibc's NSS (`getpwuid`) would load the host's `libnss_*` modules into a binary built
//! against another glibc, and `libnss_systemd` crashes there for a uid with no entry (the
//! random uids of Kubernetes and OpenShift, `docker run -u 4242`). Entries that only NSS
//! services know (LDAP, sssd, systemd-homed) are not seen: the caller's `HOME` and `USER`
//! say, or the fallbacks (the uid's number, `/`) apply.

/// The fields sbx uses of one passwd entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub home: String,
}

/// The first entry of `uid` in a passwd file's text. Malformed lines (and NIS `+`/`-`
/// lines) are skipped, as NSS's files module skips them.
pub fn entry_of(text: &str, uid: u32) -> Option<Entry> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let [name, _pw, id, _gid, _gecos, home, ..] = fields[..] else {
            return None;
        };
        if name.is_empty() || name.starts_with(['+', '-', '#']) {
            return None;
        }
        (id.parse::<u32>().ok()? == uid).then(|| Entry {
            name: name.to_string(),
            home: home.to_string(),
        })
    })
}

/// The entry of `uid` in the host's `/etc/passwd`, if it is there and readable.
pub fn lookup(uid: u32) -> Option<Entry> {
    // Bounded: a passwd file is small, and a hostile one must not exhaust memory. `take` hides
    // the file's size from read_to_string, which would then start at 32 bytes and double (8
    // reads for a 1.2 KiB file): most files fit the first read.
    use std::io::Read;
    let mut text = String::with_capacity(8 << 10);
    std::fs::File::open("/etc/passwd")
        .ok()?
        .take(16 << 20)
        .read_to_string(&mut text)
        .ok()?;
    entry_of(&text, uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment:x:5:5::/c:/bin/sh
+nis:x:7:7::/nis:/bin/sh
short:x:8
u:x:1000:1000:U Ser,,,:/home/u:/bin/bash
dup:x:1000:1000::/home/dup:/bin/sh
nohome:x:1001:1001:::/bin/sh
";

    #[test]
    fn finds_the_first_entry_of_the_uid() {
        assert_eq!(
            entry_of(PASSWD, 1000),
            Some(Entry {
                name: "u".into(),
                home: "/home/u".into()
            })
        );
        assert_eq!(entry_of(PASSWD, 0).unwrap().home, "/root");
        assert_eq!(entry_of(PASSWD, 1001).unwrap().home, "");
    }

    #[test]
    fn skips_what_is_no_entry() {
        for uid in [5, 7, 8, 4242] {
            assert_eq!(entry_of(PASSWD, uid), None, "{uid}");
        }
        assert_eq!(entry_of("", 0), None);
        assert_eq!(entry_of("x:x:notanumber:0::/:/bin/sh", 0), None);
    }
}
