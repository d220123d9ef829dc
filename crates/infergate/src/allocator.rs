//! The allocator, and the setting the server runs it with.
//!
//! mimalloc: a gateway call makes dozens of short-lived allocations, which it serves with
//! fewer instructions and less contention than the system allocator.
//!
//! mimalloc gives memory that stays free back to the system (purges it) after a delay, 1 s
//! by default. Under steady load with hundreds of connections, the pages holding calls'
//! states empty and fill again as calls come and go: purged, each is faulted in again
//! moments later (about 150 page faults and 6 `madvise` calls a second at 256 connections).
//! The server waits 10 s instead: at 256 connections that serves 4% more calls on the same
//! core (`bench/ab.py`, bench/RESULTS.md), and memory a burst took still goes back once it
//! has been free for 10 s.
//!
//! mimalloc reads its options from the environment once, as the process loads, before
//! `main` runs. So the server starts its own program again, in place of this process (same
//! process id, arguments and environment), with `MIMALLOC_PURGE_DELAY` set, unless the
//! environment sets it already: that also lets an operator choose another delay.

use std::io;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The environment variable that mimalloc reads its purge delay (ms) from.
pub const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// The server's purge delay when the environment sets none, in ms.
const SERVER_PURGE_DELAY_MS: &str = "10000";

/// Runs this program again in place of this process with the server's allocator setting,
/// unless the environment has one. Returns only when it has (`Ok`), or when the program
/// could not be started again (then mimalloc's defaults stay; the error says why).
pub fn with_server_setting() -> io::Result<()> {
    if std::env::var_os(PURGE_DELAY_VAR).is_some() {
        return Ok(());
    }
    again(&[(PURGE_DELAY_VAR, SERVER_PURGE_DELAY_MS)])
}

/// The purge delay this process runs with: the environment's, else mimalloc's default.
pub fn purge_delay() -> String {
    std::env::var(PURGE_DELAY_VAR).unwrap_or_else(|_| "1000 (mimalloc's default)".into())
}

#[cfg(target_os = "linux")]
fn again(env: &[(&str, &str)]) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut args = std::env::args_os();
    // The running program's own file, even when its path now names another (an upgrade
    // in place) or none.
    let mut command = std::process::Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` returns only when it failed.
    Err(command.args(args).envs(env.iter().copied()).exec())
}

#[cfg(not(target_os = "linux"))]
fn again(_: &[(&str, &str)]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "starting the program again is done on Linux only",
    ))
}
