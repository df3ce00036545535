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

/// Why an HTTP request failed, with the causes that say what to fix: the name that does not
/// resolve, the connection refused, the certificate not trusted (`could not connect: ...: invalid
/// peer certificate: UnknownIssuer`). For logs and the command line, never for an answer to a
/// caller: it names addresses.
pub fn http_failure(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirects are not followed"
    } else {
        "the request failed"
    };
    let mut causes: Vec<String> = Vec::new();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        // hyper and the OS often repeat the inner message in the outer one.
        if !causes.iter().any(|known| known.contains(&text)) {
            causes.push(text);
        }
        cause = c.source();
    }
    if causes.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}
