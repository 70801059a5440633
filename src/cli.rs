//! The command line: a thin driver that parses flags, calls the store and the
//! engine, and turns results into output and exit codes.
//!
//! Exit codes, the same for every subcommand: 0 success; 1 a negative answer
//! or a partial failure (wrong password, some import rows failed);
//! 2 the command could not do its work (bad input, store unreachable, usage).

mod accounts;
mod controller;
mod plan_apply;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::hashing::Argon2Params;
use crate::logging::{self, LogArgs};
use crate::store::{DEFAULT_URL, Store};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a negative answer or a partial failure.
pub const EXIT_NEGATIVE: u8 = 1;
/// Exit code: the command could not do its work.
pub const EXIT_ERROR: u8 = 2;

/// credshift runs an ISP's member-credential lifecycle declaratively: it
/// splits one shared password into purpose-bound passwords on a schedule,
/// online, and handles recovery.
#[derive(Debug, Parser)]
#[command(name = "credshift", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The account store: schema migrations.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Members: import, show, verify a password, set a password.
    #[command(subcommand)]
    Accounts(accounts::AccountsCommand),
    /// Shows what `apply` would do with the manifests: per cutover, accounts
    /// in scope, already split, to copy, and an ETA. Writes nothing.
    Plan(plan_apply::FilesArgs),
    /// Reconciles the manifests against the store (SQLite by default) until
    /// every due cutover is complete, then prints a status table.
    Apply(plan_apply::FilesArgs),
    /// Serves the member-facing API (verify, change, recovery, help-desk
    /// reset) for the policies in the given manifests.
    Serve(Box<serve::ServeArgs>),
    /// Prints the CustomResourceDefinitions as YAML (what `crds/` holds).
    Crd,
    /// Prints the HTTP API's OpenAPI description (what `api/openapi.json`
    /// holds and `serve` answers at /openapi.json).
    Openapi,
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Runs the operator: reconciles CredentialPolicy and CredentialCutover
    /// objects (leader election, /healthz, /readyz, /metrics on --health-addr).
    Controller(controller::ControllerArgs),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Applies pending schema migrations (every command also does this on start).
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Where the account store is.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Store URL: `sqlite://FILE` (embedded default) or `postgres://USER@HOST/DB`.
    #[arg(long = "store", env = "CREDSHIFT_STORE", default_value = DEFAULT_URL, hide_env_values = true)]
    pub url: String,
}

impl StoreArgs {
    pub async fn open(&self) -> Result<Store, Failure> {
        Store::open(&self.url).await.map_err(Failure::from)
    }
}

/// argon2id parameters for new hashes (until a CredentialPolicy provides them).
#[derive(Debug, Clone, clap::Args)]
pub struct HashArgs {
    /// argon2id memory cost in KiB.
    #[arg(long, env = "CREDSHIFT_ARGON2_MEMORY_KIB", default_value_t = Argon2Params::default().memory_kib)]
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    #[arg(long, env = "CREDSHIFT_ARGON2_ITERATIONS", default_value_t = Argon2Params::default().iterations)]
    pub argon2_iterations: u32,
    /// argon2id parallelism (lanes).
    #[arg(long, env = "CREDSHIFT_ARGON2_PARALLELISM", default_value_t = Argon2Params::default().parallelism)]
    pub argon2_parallelism: u32,
}

impl HashArgs {
    pub fn params(&self) -> Argon2Params {
        Argon2Params {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }
}

/// An error that ends a command: printed once on stderr, exit code 2.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::error::Error> From<E> for Failure {
    fn from(e: E) -> Failure {
        let mut message = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = s.source();
        }
        Failure(message)
    }
}

/// Parses nothing, runs everything: the binary's `main` calls this.
pub fn run(cli: Cli) -> ExitCode {
    logging::init(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("credshift: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Store(StoreCommand::Migrate { store }) => {
                let store = store.open().await?;
                println!("store {} is at the current schema", store.url());
                Ok(EXIT_OK)
            }
            Command::Accounts(cmd) => accounts::run(cmd).await,
            Command::Controller(args) => {
                crate::controller::run(args.into()).await?;
                Ok(EXIT_OK)
            }
            Command::Plan(args) => plan_apply::plan_cmd(args).await,
            Command::Apply(args) => plan_apply::apply_cmd(args).await,
            Command::Serve(args) => serve::run(*args).await,
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "credshift", &mut std::io::stdout());
                Ok(EXIT_OK)
            }
            Command::Crd => {
                print!("{}", crate::resources::crds_yaml()?);
                Ok(EXIT_OK)
            }
            Command::Openapi => {
                print!("{}", crate::api::openapi_json());
                Ok(EXIT_OK)
            }
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure(message)) => {
            eprintln!("credshift: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}
