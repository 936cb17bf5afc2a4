//! Structured JSON logs on standard output.
//!
//! `STRONGROOM_LOG` sets the filter (default `info`; sqlx is held at `warn` so statements are
//! not logged). Log fields are ids, routes and codes, never card data or credentials.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber for the process.
pub fn init() {
    let filter = EnvFilter::try_from_env("STRONGROOM_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .add_directive("sqlx=warn".parse().unwrap_or_default());
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
