//! The `edgepool` binary: a thin shell over the `edgepool` library crate.

fn main() -> std::process::ExitCode {
    edgepool::main()
}
