//! The command line. `main` parses arguments, loads and validates config (exit 64 before binding
//! anything when it is wrong), binds, and calls [`crate::server::run`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{self, ConfigErrors};
use crate::exchange::Bridge;
use crate::mapping::delegation::prior_chain;
use crate::mapping::{Decision, Mappings, RenderInput, cases, render};
use crate::{dev, issuer, server, token};

/// Exit code for configuration and usage errors (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for everything else that stops the program.
pub const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "stsbridge",
    version,
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
    },
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
        /// A PEM CA bundle to trust for an HTTPS service with a private CA.
        #[arg(long)]
        ca_file: Option<PathBuf>,
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
        /// A PEM CA bundle to trust for an HTTPS service with a private CA.
        #[arg(long)]
        ca_file: Option<PathBuf>,
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
        /// The config file.
        #[arg(long)]
        config: PathBuf,
        /// A file holding the subject token.
        #[arg(long)]
        token_file: PathBuf,
        /// The target name.
        #[arg(long)]
        target: String,
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
        Command::Check { config } => check(&config),
        Command::Explain {
            config,
            token_file,
            target,
        } => explain(&config, &token_file, &target),
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
        Command::CredentialProcess {
            bridge,
            target,
            token_file,
            ca_file,
        } => credential_process(&bridge, &target, &token_file, ca_file.as_deref()),
        Command::Agent {
            bridge,
            token_file,
            listen,
            aws_target,
            gcp_target,
            azure_target,
            ca_file,
            state_dir,
            gcp_project,
            azure_identity_header_file,
        } => agent(crate::agent::AgentOptions {
            bridge,
            token_file,
            listen,
            aws_target,
            gcp_target,
            azure_target,
            ca_file,
            state_dir,
            gcp_project,
            azure_identity_header_file,
        }),
    }
}

/// Logs to stderr (filter in `STSBRIDGE_LOG`); with the `otlp` feature and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans also go to that OTLP/HTTP collector. The returned guard
/// flushes the exporter when dropped.
fn init_logging() -> Option<otlp::Guard> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        EnvFilter::try_from_env("STSBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // Each layer has its own filter: the log lines follow STSBRIDGE_LOG, while an OTLP collector
    // also gets the exchange's step spans (validate, map, render, upstream), which are at debug
    // level so that without a collector they cost nothing on the hot path.
    let (otel, guard) = otlp::layer();
    let otel = otel.map(|layer| {
        tracing_subscriber::Layer::with_filter(layer, EnvFilter::new("info,stsbridge=debug"))
    });
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::Layer::with_filter(fmt, filter))
        .with(otel)
        .try_init();
    guard
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
    use tracing_opentelemetry::OpenTelemetryLayer;

    /// Flushes and stops the exporter on drop.
    pub struct Guard(SdkTracerProvider);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.shutdown();
        }
    }

    /// The OpenTelemetry layer, when `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector.
    pub fn layer<S>() -> (Option<OpenTelemetryLayer<S, SdkTracer>>, Option<Guard>)
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return (None, None);
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("warning: OTLP export disabled: {e}");
                return (None, None);
            }
        };
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("stsbridge")
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("stsbridge");
        (
            Some(tracing_opentelemetry::layer().with_tracer(tracer)),
            Some(Guard(provider)),
        )
    }
}

#[cfg(not(feature = "otlp"))]
mod otlp {
    /// Nothing to flush without the `otlp` feature.
    pub struct Guard;

    /// No OpenTelemetry layer without the `otlp` feature.
    pub fn layer() -> (Option<tracing_subscriber::layer::Identity>, Option<Guard>) {
        (None, None)
    }
}

fn print_errors(errors: &ConfigErrors) {
    for e in &errors.0 {
        eprintln!("error: {e}");
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

fn serve(
    config_path: Option<PathBuf>,
    listen: Option<SocketAddr>,
    aws_endpoint: Option<String>,
) -> ExitCode {
    let Some(path) = config_path else {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(code) => return code,
        };
        return rt.block_on(dev::serve(listen, aws_endpoint));
    };
    let mut config = match config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    if let Some(endpoint) = aws_endpoint {
        if let Err(m) = config::check_url(&endpoint, true) {
            eprintln!("error: --aws-endpoint: {m}");
            return ExitCode::from(EXIT_CONFIG);
        }
        config.aws.endpoint = Some(endpoint);
    }
    let tls = match config
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()
    {
        Ok(tls) => tls,
        Err(m) => {
            eprintln!("error: {}: tls: {m}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let listen = config.listen;
        let bridge = match Bridge::start(config) {
            Ok(b) => b,
            Err(crate::exchange::StartError::Mappings(errors)) => {
                print_errors(&errors);
                return ExitCode::from(EXIT_CONFIG);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        let watcher = tokio::spawn(server::watch_and_reload(Arc::clone(&bridge)));
        let scheme = if tls.is_some() { "https" } else { "http" };
        match listener.local_addr() {
            Ok(addr) => tracing::info!("listening on {addr} ({scheme})"),
            Err(_) => tracing::info!("listening on {listen} ({scheme})"),
        }
        let served = match tls {
            Some(tls) => server::run_tls(listener, bridge, tls, server::shutdown_signal()).await,
            None => server::run(listener, bridge, None, server::shutdown_signal()).await,
        };
        watcher.abort();
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}

/// Loads the config and its mappings, or the errors of both. The config's `trust` comes back
/// with the trust entries of partner files added.
fn load_all(path: &Path) -> Result<(config::Config, Mappings), ConfigErrors> {
    let mut config = config::load(path)?;
    let (mappings, trust) = Mappings::load_with_trust(&config.mappings_dir, &config.trust, path)?;
    config.trust = trust;
    Ok((config, mappings))
}

fn agent(options: crate::agent::AgentOptions) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(crate::agent::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (crate::agent::AgentError::Options(_) | crate::agent::AgentError::Client(_))) => {
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
fn credential_process(
    bridge: &str,
    target: &str,
    token_file: &Path,
    ca_file: Option<&Path>,
) -> ExitCode {
    use secrecy::ExposeSecret;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stsbridge credential-process: cannot start: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = rt.block_on(async {
        let client = crate::client::BridgeClient::new(bridge, ca_file)?;
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

fn export_issuer(path: &Path, out: &Path) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match issuer::export(&config.issuer, out) {
        Ok(exported) => {
            let url = &config.issuer.url;
            println!(
                "wrote {} and {} ({} key(s): {})",
                exported.discovery.display(),
                exported.jwks.display(),
                exported.kids.len(),
                exported.kids.join(", ")
            );
            println!(
                "serve them at {url}/.well-known/openid-configuration and {url}/.well-known/jwks.json \
                 (content type application/json); export and upload again after every \
                 `stsbridge keys rotate`, before the new key starts signing"
            );
            ExitCode::SUCCESS
        }
        Err(e @ issuer::IssuerError::NoKeys(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn rotate_keys(path: &Path, prune: bool) -> ExitCode {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let now = SystemTime::now();
    match issuer::rotate(&config.issuer, prune, now) {
        Ok((kid, pruned)) => {
            let from = crate::audit::rfc3339(now + config.issuer.publish_before_use);
            println!(
                "staged key {kid}: published at once by running services, signing from {from}"
            );
            for file in pruned {
                println!("pruned {}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let (config, mappings) = match load_all(path) {
        Ok(v) => v,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(dir) = &config.issuer.key_dir
        && let Err(e) = issuer::check_key_dir(dir)
    {
        eprintln!("error: {}: issuer.keys.dir: {e}", path.display());
        return ExitCode::from(EXIT_CONFIG);
    }
    println!(
        "ok: {} trusted issuer(s); {} target(s) and {} rule(s) in {} mapping file(s)",
        config.trust.len(),
        mappings.target_count(),
        mappings.rule_count(),
        mappings.files().len()
    );
    ExitCode::SUCCESS
}

/// `terraform-vars`: the JSON on stdout, anything left out on stderr; exit 64 when a target's
/// trust cannot be written as the cloud needs it.
fn terraform_vars(path: &Path) -> ExitCode {
    let (config, mappings) = match load_all(path) {
        Ok(v) => v,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let vars = match crate::mapping::terraform::vars(&config.issuer.url, &mappings) {
        Ok(v) => v,
        Err(errors) => {
            print_errors(&ConfigErrors(errors));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for note in &vars.notes {
        eprintln!("note: {note}");
    }
    match serde_json::to_string_pretty(&vars) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write the variables: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn explain(path: &Path, token_file: &Path, target: &str) -> ExitCode {
    let (config, mappings) = match load_all(path) {
        Ok(v) => v,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let raw = match std::fs::read_to_string(token_file) {
        Ok(t) => t.trim().to_owned(),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", token_file.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let parsed = match token::parse(&raw) {
        Ok(p) => p,
        Err(e) => {
            println!("token refused before any rule: {e} ({})", e.code());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // stsbridge's own tokens come back under its built-in trust entry.
    let own = config::own_trust(&config.issuer.url, mappings.jwt_audiences());
    let Some(trust) = config
        .trust
        .iter()
        .chain(std::iter::once(&own))
        .find(|t| t.issuer == parsed.issuer)
    else {
        println!(
            "token refused before any rule: its issuer {:?} is not in trust: (unknown_issuer)",
            parsed.issuer
        );
        return ExitCode::from(EXIT_FAILURE);
    };
    let (token, refusal) = token::inspect(parsed, trust, SystemTime::now());
    println!(
        "token: issuer {} ({}), subject {:?}",
        trust.name, token.issuer, token.subject
    );
    println!("signature: not checked (offline dry run)");
    match &refusal {
        None => println!("claims: pass (exp, nbf, iat, lifetime, aud, sub)"),
        Some(e) => println!(
            "claims: FAIL: {e} ({}); the service would refuse this token with 401",
            e.code()
        ),
    }
    if mappings.target(target).is_none() {
        println!(
            "target {target:?} does not exist (known: {})",
            mappings.target_names().join(", ")
        );
        return ExitCode::from(EXIT_FAILURE);
    }
    let rules = mappings.explain(&token, target);
    if rules.is_empty() {
        println!(
            "\nno rule of issuer {} mentions target {target}",
            trust.name
        );
    }
    for r in &rules {
        print!("\n{}", r.render(&token.subject));
    }
    let decision = mappings.decide(&token, target);
    println!();
    match decision {
        Decision::Allow { rule, target } => {
            println!("decision: allow (rule {})", rule.name);
            let prior_act = match prior_chain(&token.claims, trust.accept_act) {
                Ok(p) => p,
                Err(e) => {
                    println!("the request would be refused (invalid_request): {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            if let Some(label) = prior_act.audit_label() {
                println!("the token's own act claim: {label}");
            }
            let input = RenderInput {
                token: &token,
                raw_token: &raw,
                requested_scopes: None,
                actor: None,
                prior_act: &prior_act,
            };
            match render(target, &input) {
                Ok(request) => {
                    println!("rendered {} request:\n{request:#?}", target.kind.provider())
                }
                Err(e) => println!("rendering fails: {e}"),
            }
        }
        Decision::Deny { rule: Some(rule) } => println!("decision: deny (deny rule {})", rule.name),
        Decision::Deny { rule: None } => println!("decision: deny (no allow rule matches)"),
        Decision::ActorNotAllowed { rule } => {
            println!(
                "decision: deny (rule {} does not list the actor)",
                rule.name
            )
        }
        Decision::UnknownTarget => println!("decision: unknown target"),
    }
    if refusal.is_some() {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_tests(config: Option<&Path>, paths: &[PathBuf]) -> ExitCode {
    let loaded = match config {
        Some(path) => load_all(path).map(|(c, m)| (c.trust, m, c.mappings_dir)),
        None => {
            let dir = PathBuf::from("mappings");
            if !dir.is_dir() {
                eprintln!(
                    "error: no ./mappings here: run from the repository, or pass --config FILE"
                );
                return ExitCode::from(EXIT_CONFIG);
            }
            crate::dev::offline(&dir).map(|(t, m)| (t, m, dir))
        }
    };
    let (trust, mappings, dir) = match loaded {
        Ok(v) => v,
        Err(errors) => {
            print_errors(&errors);
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let paths = if paths.is_empty() {
        vec![dir.join("tests")]
    } else {
        paths.to_vec()
    };
    let files = match cases::test_files(&paths) {
        Ok(f) if f.is_empty() => {
            eprintln!("error: no test files in {}", paths[0].display());
            return ExitCode::from(EXIT_CONFIG);
        }
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (mut passed, mut failed, mut broken) = (0usize, 0usize, false);
    for file in &files {
        match cases::run_file(&mappings, &trust, file) {
            Err(errors) => {
                broken = true;
                for e in errors {
                    eprintln!("error: {e}");
                }
            }
            Ok(results) => {
                println!("{}: {} case(s)", file.display(), results.len());
                for r in results {
                    if r.passed() {
                        passed += 1;
                        println!("  ok    {}", r.name);
                        continue;
                    }
                    failed += 1;
                    println!("  FAIL  {}", r.name);
                    for f in &r.failures {
                        println!("        {f}");
                    }
                    for line in r.explanation.lines() {
                        println!("        {line}");
                    }
                }
            }
        }
    }
    println!(
        "\n{passed} passed, {failed} failed, in {} file(s)",
        files.len()
    );
    if broken {
        ExitCode::from(EXIT_CONFIG)
    } else if failed > 0 {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

fn partner_init(name: &str, issuer: &str, audiences: &[String], dir: &Path) -> ExitCode {
    let files = match crate::partner::init(name, issuer, audiences, dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for f in &files {
        println!("wrote {}", f.display());
    }
    println!(
        "\nnext: edit the rule's subject and claims to the partner's clients, run\n  stsbridge test\nand open a pull request. The rule starts in audit mode: it grants nothing until\nits mode is switched to enforce."
    );
    ExitCode::SUCCESS
}
