use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = credshift::cli::Cli::parse();
    credshift::cli::run(cli)
}
