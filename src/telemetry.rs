//! Logging with `tracing`: pretty or JSON lines on standard error.
//! Standard output is kept for what the operator must read (the bootstrap
//! credentials, the listening address): plain lines, or in JSON mode one
//! JSON object per line (see `startup::Application::announce`).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogFormat};

/// Installs the global subscriber. Errors name `TESSERA_LOG`.
///
/// Pretty lines are coloured only when standard error is a terminal and
/// `NO_COLOR` is unset: escape codes in a file or a log collector are noise.
pub fn init(filter: &str, format: LogFormat) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(filter).map_err(|e| ConfigError {
        setting: "log (TESSERA_LOG)".into(),
        reason: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
        LogFormat::Pretty => builder.with_ansi(colour()).try_init(),
    };
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = result;
    Ok(())
}

/// Whether pretty logs are coloured: on a terminal, unless `NO_COLOR` says
/// otherwise (<https://no-color.org>: any non-empty value).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
