//! The `stsbridge` command line, built inside the test crate so that the suite always runs the
//! current code (cargo hands integration tests the path of their own package's binaries only).
//! It is the same entry point as `bridge/src/main.rs`.

#[global_allocator]
static ALLOCATOR: stsbridge::Allocator = stsbridge::Allocator;

fn main() -> std::process::ExitCode {
    stsbridge::cli::main()
}
