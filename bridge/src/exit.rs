//! The exit codes of the command line, and the one way a command reports configuration errors.

use std::process::ExitCode;

use crate::config::ConfigErrors;

/// Exit code for configuration and usage errors (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for everything else that stops the program.
pub const EXIT_FAILURE: u8 = 1;

/// Prints every error (file, field path, value) on stderr and gives exit code 64.
pub fn config_errors(errors: &ConfigErrors) -> ExitCode {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    ExitCode::from(EXIT_CONFIG)
}

/// `error` and its causes, outermost first, as one line: `error: cause: cause's cause`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// `result`'s value, or its errors printed and exit code 64.
pub fn or_config_errors<T>(result: Result<T, ConfigErrors>) -> Result<T, ExitCode> {
    result.map_err(|errors| config_errors(&errors))
}
