//! The `strongroom` binary: parse the command line and dispatch. Everything else is in the library.

use std::process::ExitCode;

use clap::Parser;
use strongroom::cli::{self, Cli};

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
