//! Strongroom: a card-data tokenization vault with just-in-time access.
//!
//! Layers, with data flowing one way: `api` (HTTP) → `service` (use cases) → `store` (SQL),
//! `crypto` (pure) and `domain` (pure types and rules). `clock` and `random` are the two
//! sources the pure layers are handed, never reach for. `startup` wires them; `cli` is the
//! command line.

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod crypto;
pub mod domain;
pub mod hsm;
pub mod metrics;
pub mod random;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
