//! Ctrl-C during tuning: the first one stops the run cleanly, the second exits at once.
//!
//! A SIGINT handler (the `ctrlc` crate) counts interrupts. The tuning loop polls
//! [`requested`] through its observer before every candidate: after the first Ctrl-C the
//! candidate in flight finishes (its timeout bounds that), what the batch measured is appended
//! to the log, the rest of the batch is abandoned (a rerun measures it), and the command prints
//! its summary with the stop reason `interrupted`, as JSON too with `--json`. A second Ctrl-C
//! exits with status 130 without waiting for anything; the log then holds every batch written
//! before, as after a kill.
//!
//! The measurement worker shares the terminal's process group, so a Ctrl-C typed at the
//! terminal reaches it too; it ignores SIGINT ([`ignore_in_worker`]) and ends when its parent
//! closes its stdin, so the candidate it is measuring is not recorded as a crash.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// Interrupts received so far.
static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

/// The exit status of a process ended by SIGINT, by shell convention (128 + 2).
const EXIT_INTERRUPTED: i32 = 130;

/// Installs the handler (once per process; later calls do nothing).
pub fn install() -> anyhow::Result<()> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        result = ctrlc::set_handler(|| {
            if INTERRUPTS.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!(
                    "\ninterrupted: finishing the candidate in flight and writing what was \
                     measured (Ctrl-C again to exit at once)"
                );
            } else {
                eprintln!("\ninterrupted again: exiting now");
                std::process::exit(EXIT_INTERRUPTED);
            }
        });
    });
    result.map_err(|error| anyhow::anyhow!("installing the Ctrl-C handler: {error}"))
}

/// Whether Ctrl-C was pressed since the handler was installed.
pub fn requested() -> bool {
    INTERRUPTS.load(Ordering::SeqCst) > 0
}

/// The worker's side: Ctrl-C at the terminal is its parent's to handle.
pub fn ignore_in_worker() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {})
        .map_err(|error| anyhow::anyhow!("setting the worker's SIGINT handler: {error}"))
}
