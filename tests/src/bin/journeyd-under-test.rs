//! `journeyd`, built inside the `tests` package so its integration tests can run it.

fn main() -> std::process::ExitCode {
    journeyd::main()
}
