//! The `tessera` binary: parse the command line and run it.

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the exchange allocates many small
/// short-lived objects per request, where mimalloc's per-thread free lists
/// are measurably cheaper (bench/run.sh), and it gives freed pages back to
/// the system on its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    tessera::cli::run().await
}
