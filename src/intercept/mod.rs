//! sbx's seccomp listener, served from the supervisor. Init installs one filter whose calls
//! wait for sbx (see `plan::seccomp::interception_program`): a process may have only one
//! listener in its filter chain, so the egress's network calls and an observed run's path
//! calls share it, and this loop hands each call to its owner.

mod files;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use files::{Access, LEGACY_PATH_CALLS, Observed, PATH_CALLS};

use crate::egress;
use crate::sys::{self, Answer, Errno, Notification};

/// The listener's thread for one running sandbox.
pub(crate) struct Interceptor {
    stop: OwnedFd,
    thread: JoinHandle<()>,
    files: Option<Arc<files::Recorder>>,
}

impl Interceptor {
    /// Serves `listener`: network calls go to `egress` (when the run has it), path calls are
    /// recorded when `files` is on; everything else runs as made.
    pub(crate) fn start(
        listener: OwnedFd,
        egress: Option<Arc<egress::Shared>>,
        files: bool,
    ) -> std::io::Result<Interceptor> {
        let (stop_r, stop_w) = nix::unistd::pipe()?;
        let recorder = files.then(|| Arc::new(files::Recorder::default()));
        let rec = recorder.clone();
        let thread = std::thread::Builder::new()
            .name("sbx-intercept".into())
            .spawn(move || serve(Arc::new(listener), stop_r, egress, rec))?;
        Ok(Interceptor {
            stop: stop_w,
            thread,
            files: recorder,
        })
    }

    /// Stops serving and returns what was recorded.
    pub(crate) fn stop(self) -> Option<Observed> {
        let _ = nix::unistd::write(&self.stop, b"x");
        let _ = self.thread.join();
        self.files.map(|f| f.take())
    }
}

fn is_network(nr: i64) -> bool {
    matches!(
        nr,
        libc::SYS_connect | libc::SYS_sendto | libc::SYS_sendmsg | libc::SYS_sendmmsg
    )
}

/// Serves the listener until no process uses the filter or sbx stops.
fn serve(
    listener: Arc<OwnedFd>,
    stop: OwnedFd,
    egress: Option<Arc<egress::Shared>>,
    files: Option<Arc<files::Recorder>>,
) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let ready = |f: &PollFd| f.revents().unwrap_or(PollFlags::empty());
        if !ready(&fds[1]).is_empty() {
            return;
        }
        let events = ready(&fds[0]);
        if events.contains(PollFlags::POLLIN) {
            match sys::notif_recv(listener.as_raw_fd()) {
                Ok(n) => handle(&listener, &egress, &files, n),
                Err(Errno::ENOENT) => {}
                Err(_) => return,
            }
        } else if !events.is_empty() {
            // POLLHUP: no process uses the filter any more.
            return;
        }
    }
}

fn handle(
    listener: &Arc<OwnedFd>,
    egress: &Option<Arc<egress::Shared>>,
    files: &Option<Arc<files::Recorder>>,
    n: Notification,
) {
    if is_network(n.nr) {
        if let Some(e) = egress {
            return egress::intercepted(e, listener, n);
        }
    } else if let Some(f) = files {
        f.record(&n);
    }
    let _ = sys::notif_respond(listener.as_raw_fd(), n.id, Answer::Continue);
}
