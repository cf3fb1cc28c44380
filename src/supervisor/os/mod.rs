//! Operating-system specifics of process supervision, behind one small API.
//!
//! Owns: putting the app in its own process group (Unix) or Job Object
//! (Windows), the polite stop signal and the forced kill of the whole
//! group, making sure nothing outlives hpgate (the app's daemons included), and finding which addresses a
//! process listens on (for the "wrong port" message). Everything else in the
//! supervisor is OS-neutral and must stay so.

#[cfg(unix)]
mod orphans;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::{listening_addrs, port_owners, prepare, run_watchdog, spawn, Guard, Watchdog};

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::{listening_addrs, port_owners, prepare, run_watchdog, spawn, Guard, Watchdog};
