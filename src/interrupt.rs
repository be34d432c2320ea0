//! Ctrl-C, watched once per process.
//!
//! While node steps run ([`graceful`] held), the first Ctrl-C sets the process's cancel flag: the
//! engine finishes the changes in flight, starts nothing new, records where it stopped in the
//! journal and exits 130. Anywhere else — and at a second Ctrl-C — the process exits 130 at
//! once: every change on the hypervisor is one libvirt call or one atomic file write, and the
//! next run completes what was left (the same as being killed).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

static CANCEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static GRACEFUL: AtomicUsize = AtomicUsize::new(0);

/// The process's cancel flag; the first call starts watching Ctrl-C.
pub fn flag() -> Arc<AtomicBool> {
    CANCEL
        .get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let set = flag.clone();
            crate::engine::fanout::runtime().spawn(async move {
                while tokio::signal::ctrl_c().await.is_ok() {
                    if GRACEFUL.load(Ordering::SeqCst) > 0 && !set.swap(true, Ordering::SeqCst) {
                        tracing::warn!(
                            "interrupted: finishing the changes in flight (Ctrl-C again stops at once)"
                        );
                    } else {
                        tracing::warn!("interrupted");
                        crate::host::ssh::jump::close_all();
                        std::process::exit(130);
                    }
                }
            });
            flag
        })
        .clone()
}

/// While the returned guard lives, a first Ctrl-C only sets [`flag`].
pub fn graceful() -> Graceful {
    let _ = flag();
    GRACEFUL.fetch_add(1, Ordering::SeqCst);
    Graceful(())
}

pub struct Graceful(());

impl Drop for Graceful {
    fn drop(&mut self) {
        GRACEFUL.fetch_sub(1, Ordering::SeqCst);
    }
}
