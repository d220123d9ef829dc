//! The `infergate` binary: a thin entry point. Parsing lives in `cli`, the server in
//! `serve`, the client commands in `client`.

mod allocator;
mod cli;
mod client;
mod config;
mod serve;

use std::process::ExitCode;

use clap::FromArgMatches;

use crate::cli::{Cli, Command};

use crate::client::{call, commands, CliError, Client};

/// The async runtime: one thread per available core (the process's CPU affinity counts)
/// unless `workers` says otherwise; a single worker runs everything on the calling thread,
/// with no hand-offs between threads.
fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    let workers = workers.or_else(|| {
        std::thread::available_parallelism()
            .ok()
            .map(|n| n.get())
            .filter(|&n| n == 1)
    });
    let built = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    built.map_err(|err| {
        eprintln!("infergate: cannot start the async runtime: {err}");
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    // `COMPLETE=<shell> infergate …`: the shell asks for completions; answered, then exit.
    clap_complete::CompleteEnv::with_factory(cli::command).complete();
    let cli = match cli::command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if let Command::Serve(args) = cli.command {
        // Returns only when the setting is in place, or could not be.
        if let Err(err) = allocator::with_server_setting() {
            eprintln!(
                "infergate: the allocator keeps its default purge delay: cannot set {}: {err}",
                allocator::PURGE_DELAY_VAR
            );
        }
        let settings = match config::Settings::resolve(*args) {
            Ok(settings) => settings,
            Err(err) => {
                eprintln!("infergate: {err:#}");
                return ExitCode::FAILURE;
            }
        };
        let runtime = match runtime(settings.workers) {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        return match runtime.block_on(serve::run(settings)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("infergate: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match runtime(None) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    if let Command::Migrate { database_url } = &cli.command {
        return match runtime.block_on(serve::migrate(database_url)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("infergate: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Unlock {
        user,
        data_dir,
        database_url,
    } = &cli.command
    {
        let unlocked = serve::unlock(user, data_dir.as_deref(), database_url.as_deref());
        return match runtime.block_on(unlocked) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("infergate: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(client_command(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(err.exit_code())
        }
    }
}

async fn client_command(cli: Cli) -> Result<(), CliError> {
    let global = cli.global;
    match cli.command {
        Command::Serve(_) | Command::Migrate { .. } | Command::Unlock { .. } => Ok(()),
        Command::Login(args) => commands::login(&global, args).await,
        Command::Logout => commands::logout(&global).await,
        Command::Sign(args) => call::sign_command(args),
        Command::Call(args) => call::call_command(&global, args).await,
        Command::Completions { shell } => completions(shell),
        Command::Service(cmd) => commands::service(&Client::from_global(&global)?, cmd).await,
        Command::Api(cmd) => commands::api(&Client::from_global(&global)?, cmd).await,
        Command::App(cmd) => commands::app(&Client::from_global(&global)?, cmd).await,
        Command::Auth(cmd) => commands::auth(&Client::from_global(&global)?, cmd).await,
        Command::User(cmd) => commands::user(&Client::from_global(&global)?, cmd).await,
        Command::Project(cmd) => commands::project(&Client::from_global(&global)?, cmd).await,
        Command::Role(cmd) => commands::role(&Client::from_global(&global)?, cmd).await,
        Command::Key(cmd) => commands::key(&Client::from_global(&global)?, cmd).await,
        Command::Throttle(cmd) => commands::throttle(&Client::from_global(&global)?, cmd).await,
        Command::Usage(args) => commands::usage(&Client::from_global(&global)?, args).await,
    }
}

/// The shell's registration script: it runs this binary with `COMPLETE=<shell>` to ask for
/// the candidates as the user types (see [`clap_complete::CompleteEnv`]).
fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
    let completer: &dyn EnvCompleter = match shell {
        clap_complete::Shell::Bash => &Bash,
        clap_complete::Shell::Zsh => &Zsh,
        clap_complete::Shell::Fish => &Fish,
        clap_complete::Shell::Elvish => &Elvish,
        clap_complete::Shell::PowerShell => &Powershell,
        other => return Err(CliError::Usage(format!("no completions for {other}"))),
    };
    let bin = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "infergate".to_owned());
    completer
        .write_registration("COMPLETE", "infergate", &bin, &bin, &mut std::io::stdout())
        .map_err(|e| CliError::Other(format!("writing the completion script: {e}")))
}
