//! The `journeyd` executable; everything is in the library.

fn main() -> std::process::ExitCode {
    journeyd::main()
}
