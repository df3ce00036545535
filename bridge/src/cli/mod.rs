//! The command line. `main` parses arguments, loads and validates config (exit 64 before binding
//! anything when it is wrong), binds, and calls [`crate::server::run`]. Rooms: `serve`, `offline`
//! (the commands that need no service), `revoke` (the revocation API's client), `telemetry` (logs
//! and OTLP).

mod offline;
mod revoke;
mod serve;
mod telemetry;

pub use crate::exit::{EXIT_CONFIG, EXIT_FAILURE};
use crate::exit::{config_errors, or_config_errors};
use offline::{
    check, explain, export_issuer, partner_init, rotate_keys, run_tests, terraform_vars,
};
use serve::serve;
use telemetry::init_logging;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::{Parser, Subcommand};

use crate::config::{self, ConfigErrors};
use crate::exchange::Bridge;
use crate::mapping::delegation::prior_chain;
use crate::mapping::{Decision, Mappings, RenderInput, cases, render};
use crate::{dev, issuer, server, token};

/// The cargo features this binary was built with, for `--version`.
#[cfg(feature = "otlp")]
macro_rules! features {
    () => {
        "otlp"
    };
}
#[cfg(not(feature = "otlp"))]
macro_rules! features {
    () => {
        "none"
    };
}

/// What `stsbridge --version` prints after the name: the version, the git revision it was built
/// from, and its cargo features.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("STSBRIDGE_GIT_REVISION"),
    "; features: ",
    features!(),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "stsbridge",
    version = VERSION,
    about = "A cloud STS bridge: trade the token you have for short-lived cloud credentials."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service. Without --config it starts in dev mode on loopback.
    Serve {
        /// The config file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address (overrides the config; dev mode default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// AWS STS endpoint (overrides the config), e.g. moto's server at http://127.0.0.1:5000.
        #[arg(long)]
        aws_endpoint: Option<String>,
    },
    /// Validate the config and every mapping file; exit 0, or 64 listing each problem.
    Check {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// Also fetch every trusted issuer's discovery document and keys, and report each
        /// failure with its causes (DNS, connection, TLS certificate, HTTP status).
        #[arg(long)]
        online: bool,
    },
    /// Revoke a compromised token, caller, issuer or target (`revoke list`, `revoke delete ID`).
    Revoke(revoke::RevokeArgs),
    /// Print AWS credential_process (Version 1) JSON for ~/.aws/config's credential_process.
    CredentialProcess {
        /// The service's base URL.
        #[arg(long)]
        bridge: String,
        /// The AWS target.
        #[arg(long)]
        target: String,
        /// A file holding the subject token (re-read on every call).
        #[arg(long)]
        token_file: PathBuf,
        #[command(flatten)]
        tls: crate::client::ClientTls,
    },
    /// Run the loopback sidecar that serves each cloud SDK's own local credential protocol.
    Agent {
        /// The service's base URL.
        #[arg(long)]
        bridge: String,
        /// The workload's token file (re-read whenever credentials are fetched).
        #[arg(long)]
        token_file: PathBuf,
        /// Loopback address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Target served as AWS container credentials.
        #[arg(long)]
        aws_target: Option<String>,
        /// Target served as the GCE metadata server.
        #[arg(long)]
        gcp_target: Option<String>,
        /// Target served as the Azure App Service managed identity endpoint.
        #[arg(long)]
        azure_target: Option<String>,
        #[command(flatten)]
        tls: crate::client::ClientTls,
        /// Directory for the AWS authorization token file (default: a new private temp directory).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Project id the metadata server reports.
        #[arg(long)]
        gcp_project: Option<String>,
        /// Use the IDENTITY_HEADER secret in this file instead of a generated one.
        #[arg(long)]
        azure_identity_header_file: Option<PathBuf>,
    },
    /// GET a health URL (`/healthz`, `/readyz` of the service or the agent); exit 0 on a 2xx,
    /// 1 otherwise. The exec probe of an image with no shell or curl.
    Probe {
        /// The URL (`https://...`, or `http://` to loopback).
        url: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 2)]
        timeout: u64,
        #[command(flatten)]
        tls: crate::client::ClientTls,
    },
    /// Print the JSON Schema of a file kind: `config` (stsbridge.yaml), `mappings` (mapping and
    /// partner files) or `tests` (mapping tests), derived from the types that read them; or
    /// `openapi`, the OpenAPI 3.1 document of the HTTP API (what `/openapi.json` serves).
    Schema {
        /// Which file kind, or `openapi`.
        #[arg(value_parser = ["config", "mappings", "tests", "openapi"])]
        kind: String,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell), e.g.
    /// `stsbridge completions bash > /etc/bash_completion.d/stsbridge`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// stsbridge's own issuer.
    Issuer {
        #[command(subcommand)]
        command: IssuerCommand,
    },
    /// Manage stsbridge's signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Offline dry run: evaluate a token against the rules for a target and show the rendered
    /// request. The signature is not checked.
    Explain {
        /// The config file (default: dev mode's built-in issuers over ./mappings).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A file holding the subject token.
        #[arg(long)]
        token_file: PathBuf,
        /// The target name.
        #[arg(long)]
        target: String,
        /// `text` (default) or `json` (one object: token, claims, rules with each condition's
        /// expected and received values, decision).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// Run the mapping tests (mappings/tests/*.yaml): each case's decision and rendered request,
    /// with the real engine. Exit 0 when all pass, 1 on any failure, 64 on a broken test file.
    Test {
        /// The config file (default: the dev-mode trust list over ./mappings).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Test files or directories (default: the mappings directory's tests/).
        paths: Vec<PathBuf>,
    },
    /// Print the `.tfvars.json` for terraform/: per target, the role, service account or
    /// identity, and the exact `sub` and `aud` of the assertions stsbridge presents.
    TerraformVars {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Onboard partners.
    Partner {
        #[command(subcommand)]
        command: PartnerCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PartnerCommand {
    /// Write a starting partner file (its trust entry, a target and a rule in audit mode) and
    /// its tests.
    Init {
        /// The partner's name (trust entry and file name: partner-NAME.yaml).
        #[arg(long)]
        name: String,
        /// The partner's issuer URL (exact `iss`; its keys come from OIDC discovery).
        #[arg(long)]
        issuer: String,
        /// The audience the partner's tokens carry (repeat for several).
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// The mappings directory.
        #[arg(long, default_value = "mappings")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum IssuerCommand {
    /// Write the discovery document and JWKS (OUT/.well-known/openid-configuration and
    /// OUT/.well-known/jwks.json) for static hosting, for a service the clouds cannot reach.
    /// Export again after every `keys rotate`.
    Export {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// The directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Stage a new signing key: running services publish it at once and sign with it after
    /// `issuer.keys.publish_before_use`; the key it replaces stays published until everything it
    /// signed has expired.
    Rotate {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// Also delete the files of keys that are no longer published.
        #[arg(long)]
        prune: bool,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _otlp = init_logging();
    match cli.command {
        Command::Serve {
            config,
            listen,
            aws_endpoint,
        } => serve(config, listen, aws_endpoint),
        Command::Check { config, online } => check(&config, online),
        Command::Explain {
            config,
            token_file,
            target,
            output,
        } => explain(config.as_deref(), &token_file, &target, output == "json"),
        Command::Keys {
            command: KeysCommand::Rotate { config, prune },
        } => rotate_keys(&config, prune),
        Command::Issuer {
            command: IssuerCommand::Export { config, out },
        } => export_issuer(&config, &out),
        Command::Test { config, paths } => run_tests(config.as_deref(), &paths),
        Command::TerraformVars { config } => terraform_vars(&config),
        Command::Partner {
            command:
                PartnerCommand::Init {
                    name,
                    issuer,
                    audiences,
                    dir,
                },
        } => partner_init(&name, &issuer, &audiences, &dir),
        Command::Revoke(args) => revoke::revoke(args),
        Command::Probe { url, timeout, tls } => probe(&url, timeout, &tls),
        Command::Schema { kind } if kind == "openapi" => {
            print!("{}", crate::http::openapi::document_json());
            ExitCode::SUCCESS
        }
        Command::Schema { kind } => {
            println!("{}", crate::config::schema(&kind));
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "stsbridge", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::CredentialProcess {
            bridge,
            target,
            token_file,
            tls,
        } => credential_process(&bridge, &target, &token_file, &tls),
        Command::Agent {
            bridge,
            token_file,
            listen,
            aws_target,
            gcp_target,
            azure_target,
            tls,
            state_dir,
            gcp_project,
            azure_identity_header_file,
        } => agent(crate::client::agent::AgentOptions {
            bridge,
            token_file,
            listen,
            aws_target,
            gcp_target,
            azure_target,
            tls,
            state_dir,
            gcp_project,
            azure_identity_header_file,
        }),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_FAILURE)
        })
}

/// Loads the config and its mappings, or the errors of both. The config's `trust` comes back
/// with the trust entries of partner files added.
fn load_all(path: &Path) -> Result<(config::Config, Mappings), ConfigErrors> {
    let mut config = config::load(path)?;
    let (mappings, trust) = Mappings::load_with_trust(&config.mappings_dir, &config.trust, path)?;
    let own = mappings.own_issuer_errors(&config.issuer.url);
    if !own.is_empty() {
        return Err(ConfigErrors(own));
    }
    config.trust = trust;
    Ok((config, mappings))
}

fn agent(options: crate::client::agent::AgentOptions) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(crate::client::agent::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            e @ (crate::client::agent::AgentError::Options(_)
            | crate::client::agent::AgentError::Client(_)),
        ) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `credential-process`: stdout gets the Version 1 JSON and nothing else; every failure is one
/// line on stderr and a non-zero exit, which the AWS SDKs report to the user.
/// The one-thread runtime of a short client command.
fn small_runtime(command: &str) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("stsbridge {command}: cannot start: {e}");
            ExitCode::from(EXIT_FAILURE)
        })
}

fn probe(url: &str, timeout: u64, tls: &crate::client::ClientTls) -> ExitCode {
    let rt = match small_runtime("probe") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        crate::client::BridgeClient::new(url, tls)?
            .probe(std::time::Duration::from_secs(timeout.clamp(1, 60)))
            .await
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stsbridge probe: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn credential_process(
    bridge: &str,
    target: &str,
    token_file: &Path,
    tls: &crate::client::ClientTls,
) -> ExitCode {
    use secrecy::ExposeSecret;
    let rt = match small_runtime("credential-process") {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        let client = crate::client::BridgeClient::new(bridge, tls)?;
        let token = crate::client::read_token(token_file)?;
        client.credentials(target, &token, true).await
    });
    match result {
        Ok(body) => {
            let valid = serde_json::from_str::<serde_json::Value>(body.expose_secret())
                .is_ok_and(|v| v["Version"] == 1);
            if !valid {
                eprintln!(
                    "stsbridge credential-process: {target} did not answer AWS credential_process JSON (is it an AWS target?)"
                );
                return ExitCode::from(EXIT_FAILURE);
            }
            println!("{}", body.expose_secret());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stsbridge credential-process: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
