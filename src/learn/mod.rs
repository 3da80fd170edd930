//! `sbx learn`: runs a command under a permissive view of its base profile, records the paths
//! it names (seccomp user notification, see `intercept`), and writes a profile that extends the
//! base and grants what the command used.
//!
//! The view: the base profile as it is (namespaces, network, hidden credentials, protected
//! workspace paths, limits, landlock, seccomp), plus the host's own directories read-only
//! (`view`), and the base's tmpfs over host directories turned into throwaway overlays of them,
//! so that what the command reads there is seen (and learned) while its writes still vanish.
//! A write the base does not allow fails in the learning run as it would under the base, and is
//! learned.

mod grant;
mod view;

pub use grant::Learned;
pub use view::permissive;
