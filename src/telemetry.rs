//! Structured JSON logs on standard output.
//!
//! `STRONGROOM_LOG` sets the filter (default `info`; sqlx is held at `warn` so statements are
//! not logged). Log fields are ids, routes and codes, never card data or credentials.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber for the process.
pub fn init() {
    init_with_default("info");
}

/// Installs the JSON subscriber with `level` unless `STRONGROOM_LOG` says otherwise.
pub fn init_with_default(level: &str) {
    let filter = EnvFilter::try_from_env("STRONGROOM_LOG")
        .unwrap_or_else(|_| EnvFilter::new(level))
        .add_directive("sqlx=warn".parse().unwrap_or_default());
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
