//! The `stsbridge` binary: everything is in the library; this only hands over the exit code.

#[global_allocator]
static ALLOCATOR: stsbridge::Allocator = stsbridge::Allocator;

fn main() -> std::process::ExitCode {
    stsbridge::cli::main()
}
