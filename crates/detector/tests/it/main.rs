//! The detector's integration tests, one binary (the model loads once, `common` compiles once):
//! the real model on the test photos ([`known_answers`]), parity with the committed golden data
//! ([`parity`]), untrusted bytes ([`bad_input`]), and the per-node profile ([`profile`]).

#![allow(clippy::unwrap_used)]

mod bad_input;
mod common;
mod known_answers;
mod parity;
mod profile;
