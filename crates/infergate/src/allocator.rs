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
//! environment sets it already: that also lets an operator choose another delay. It does so
//! only when the program it would start is the one running (not when it was started through
//! another program, such as the dynamic loader), and by the path it was started by, so that
//! the process keeps its name.

use std::io;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The environment variable that mimalloc reads its purge delay (ms) from.
pub const PURGE_DELAY_VAR: &str = "MIMALLOC_PURGE_DELAY";

/// The server's purge delay when the environment sets none, in ms.
const SERVER_PURGE_DELAY_MS: &str = "10000";

/// The legacy name mimalloc also reads the delay from.
const LEGACY_VAR: &str = "MIMALLOC_RESET_DELAY";

/// The value the environment gives the delay, if any: mimalloc matches the names in any case.
fn operator_value() -> Option<std::ffi::OsString> {
    std::env::vars_os().find_map(|(name, value)| {
        let name = name.to_str()?;
        (name.eq_ignore_ascii_case(PURGE_DELAY_VAR) || name.eq_ignore_ascii_case(LEGACY_VAR))
            .then_some(value)
    })
}

/// Runs this program again in place of this process with the server's allocator setting,
/// unless the environment has one. Returns only when it has (`Ok`), or when the program
/// could not be started again (then mimalloc's defaults stay; the error says why).
pub fn with_server_setting() -> io::Result<()> {
    if operator_value().is_some() {
        return Ok(());
    }
    again(&[(PURGE_DELAY_VAR, SERVER_PURGE_DELAY_MS)])
}

/// The purge delay this process runs with, read as mimalloc reads it: the environment's
/// value when it is one, else mimalloc's default.
pub fn purge_delay() -> String {
    let Some(value) = operator_value() else {
        return "1000 (mimalloc's default)".into();
    };
    let text = value.to_string_lossy().to_ascii_uppercase();
    match text.as_str() {
        "" | "1" | "TRUE" | "YES" | "ON" => "1".into(),
        "0" | "FALSE" | "NO" | "OFF" => "0".into(),
        number => match number.parse::<i64>() {
            Ok(ms) => ms.to_string(),
            Err(_) => format!(
                "1000 (mimalloc's default: {PURGE_DELAY_VAR}={:?} is not a number)",
                value.to_string_lossy()
            ),
        },
    }
}

/// The file the program was started by (its first argument, a path or a name on `PATH`),
/// when it is the program running: the same file as `/proc/self/exe`.
#[cfg(target_os = "linux")]
fn running_program() -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let first = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| io::Error::other("the program was started with no name"))?;
    let path = if first.components().count() > 1 {
        first
    } else {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(&first))
            .find(|candidate| {
                use std::os::unix::fs::PermissionsExt;
                // As `execvp` looks: the first file there that may be executed.
                std::fs::metadata(candidate)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .ok_or_else(|| io::Error::other(format!("{first:?} is not on PATH")))?
    };
    let (named, running) = (
        std::fs::metadata(&path)?,
        std::fs::metadata("/proc/self/exe")?,
    );
    if (named.dev(), named.ino()) != (running.dev(), running.ino()) {
        return Err(io::Error::other(format!(
            "{path:?} is not the program running (started through another program, or \
             replaced since)"
        )));
    }
    Ok(path)
}

#[cfg(target_os = "linux")]
fn again(env: &[(&str, &str)]) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let program = running_program()?;
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(program);
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
