//! The `strongroom` binary: parse the command line and dispatch. Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use strongroom::cli::{self, Cli};

// jemalloc, with its background threads on (the crate's `background_threads` feature), hands
// freed memory back to the system within seconds, so a server's footprint returns near its
// baseline once a spike of connections has passed; the system allocator kept the peak
// (bench/spike.sh: 17 → 75 → 75 MiB with it, 19 → 80 → 24 MiB with this).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let parsed = Cli::parse();
    match cli::run(parsed).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.0);
            ExitCode::FAILURE
        }
    }
}
