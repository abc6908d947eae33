//! The `edgepool-bench` binary: a thin shell over the `edgepool_bench` library.

fn main() -> std::process::ExitCode {
    edgepool_bench::main()
}
