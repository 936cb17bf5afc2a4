//! Integration tests: the real server on a real socket, a fresh database per test — a SQLite
//! file of its own for most (`spawn_app`), a PostgreSQL database for the concurrency tests and
//! those that read rows with SQL (`spawn_pg_app`), and both engines for the store conformance
//! suite. One binary, so the server and fixtures are compiled once.
//!
//! Set `STRONGROOM_TEST_DATABASE_URL` to point elsewhere than
//! `postgres://postgres@127.0.0.1:5432/postgres`. A missing database fails the tests loudly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod helpers;

mod access;
mod audit;
mod audit_integrity;
mod auth;
mod card_data;
mod ceremony;
mod cli;
mod console;
mod dev;
mod errors;
mod grants;
mod guard;
mod hsm;
mod integrity;
mod keys;
mod leaks;
mod onboarding;
mod openapi;
mod operations;
mod reports;
mod review;
mod sessions;
mod signing_keys;
mod store;
mod tls;
mod tokens;
