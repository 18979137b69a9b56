//! End-to-end tests: the real program, a fresh database each, driven as an operator would.

mod cli;
mod docs;
mod import;
mod monitoring;
mod projections;
mod quarantine;
mod security;
mod serve;

use tests::Journeyd;

fn journeyd() -> Journeyd {
    Journeyd::new(env!("CARGO_BIN_EXE_journeyd-under-test"))
}
