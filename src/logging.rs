//! Structured logs through `tracing`, to stderr, as text or JSON.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging flags shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(
        long,
        env = "CREDSHIFT_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `credshift=debug,kube=info`.
    #[arg(long, env = "CREDSHIFT_LOG", default_value = "warn", global = true)]
    pub log: String,
}

/// Installs the global subscriber. An invalid filter falls back to `warn`
/// with a message instead of failing the command.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|e| {
        eprintln!(
            "credshift: ignoring invalid --log filter {:?}: {e}",
            args.log
        );
        EnvFilter::new("warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
