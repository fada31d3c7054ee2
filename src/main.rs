//! The `tessera` binary: parse the command line and run it.

use std::process::ExitCode;

#[actix_web::main]
async fn main() -> ExitCode {
    tessera::cli::run().await
}
