//! Token rows: the statements both engines share (see [`crate::store::dialect`]).

pub(in crate::store) mod calls;
pub(in crate::store) mod sql;

pub(super) use sql::token_store;
