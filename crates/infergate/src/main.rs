//! The `infergate` binary: a thin entry point. Parsing lives in `cli`, the server in
//! `serve`, the client commands in `client`.

mod cli;
mod client;
mod config;
mod serve;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};
use crate::client::{call, commands, CliError, Client};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("infergate: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Serve(args) = cli.command {
        return match runtime.block_on(serve::run(*args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("infergate: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Migrate { database_url } = &cli.command {
        return match runtime.block_on(serve::migrate(database_url)) {
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
        Command::Serve(_) | Command::Migrate { .. } => Ok(()),
        Command::Login(args) => commands::login(&global, args).await,
        Command::Sign(args) => call::sign_command(args),
        Command::Call(args) => call::call_command(&global, args).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "infergate",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Service(cmd) => commands::service(&Client::from_global(&global)?, cmd).await,
        Command::Api(cmd) => commands::api(&Client::from_global(&global)?, cmd).await,
        Command::App(cmd) => commands::app(&Client::from_global(&global)?, cmd).await,
        Command::Auth(cmd) => commands::auth(&Client::from_global(&global)?, cmd).await,
        Command::User(cmd) => commands::user(&Client::from_global(&global)?, cmd).await,
        Command::Project(cmd) => commands::project(&Client::from_global(&global)?, cmd).await,
        Command::Role(cmd) => commands::role(&Client::from_global(&global)?, cmd).await,
        Command::Key(cmd) => commands::key(&Client::from_global(&global)?, cmd).await,
    }
}
