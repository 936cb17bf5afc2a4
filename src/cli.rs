//! The `strongroom` command line: parse, dispatch, print.
//!
//! Every flag of `serve` has a `STRONGROOM_*` variable. The master key is read from
//! `STRONGROOM_MASTER_KEY` only (never a flag, so it stays out of `ps` and shell history),
//! and no message ever prints it or the database URL.
//!
//! Which master keys a command takes: a weak one (see `crypto::key_strength`) nowhere; a
//! development one (made by `strongroom dev`) only where it can be the only key there is and
//! nothing is served: `dev` itself, `audit verify`, which checks a dev vault's trail too, and
//! `keys status`, which only reads.
//! `serve`, `migrate` and the `principal` commands refuse it, so that a key from a laptop's
//! data directory never protects, prepares or administers a real vault.

pub mod admin;
mod args;
mod client;
mod commands;
pub mod dev;
mod guard;
mod keys;
mod principals;
mod tenant;
mod unseal;

pub use args::Cli;
pub use commands::run;
