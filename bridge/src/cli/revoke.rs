//! `stsbridge revoke`: the revocation API from the command line, authenticated by the operator's
//! own token. A presented token is never sent: only its SHA-256.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::runtime;
use crate::client::{BridgeClient, read_token};
use crate::exit::{EXIT_CONFIG, EXIT_FAILURE};

/// `stsbridge revoke ...`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct RevokeArgs {
    #[command(subcommand)]
    command: Option<RevokeCommand>,
    /// The service's base URL.
    #[arg(long, global = true)]
    bridge: Option<String>,
    /// A file holding your own token (a rule must allow it stsbridge:revoke).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// A PEM CA bundle to trust for an HTTPS service with a private CA.
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// Revoke one subject: TRUST:SUB (the trust entry's name, then the token's `sub`).
    #[arg(long, group = "what", value_name = "TRUST:SUB")]
    subject: Option<String>,
    /// Revoke one token id: TRUST:JTI.
    #[arg(long, group = "what", value_name = "TRUST:JTI")]
    jti: Option<String>,
    /// Revoke one token, read from this file; only its SHA-256 is sent.
    #[arg(long, group = "what", value_name = "FILE")]
    presented_token_file: Option<PathBuf>,
    /// Revoke every token of a trust entry.
    #[arg(long, group = "what", value_name = "TRUST")]
    issuer: Option<String>,
    /// Revoke a target: no one obtains it, and its cached credentials are dropped.
    #[arg(long, group = "what", value_name = "TARGET")]
    target: Option<String>,
    /// Revoke a token stsbridge minted, by its `jti`.
    #[arg(long, group = "what", value_name = "JTI")]
    minted_jti: Option<String>,
    /// How long the revocation lasts (default 24h), e.g. 30m, 24h, 7d.
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,
    /// Why (it goes in the audit log).
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Subcommand)]
enum RevokeCommand {
    /// List the live revocations.
    List,
    /// Remove a revocation by its id.
    Delete {
        /// The revocation's id (rev_...).
        id: String,
    },
}

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_CONFIG)
}

/// The request body the arguments ask for, or what is missing.
fn body(args: &RevokeArgs) -> Result<Value, String> {
    let scoped = |flag: &str, v: &str| -> Result<(String, String), String> {
        match v.split_once(':') {
            Some((trust, rest)) if !trust.is_empty() && !rest.is_empty() => {
                Ok((trust.to_owned(), rest.to_owned()))
            }
            _ => Err(format!(
                "--{flag} takes TRUST:VALUE (the trust entry's name, a colon, then the value)"
            )),
        }
    };
    let (kind, issuer, value) = if let Some(v) = &args.subject {
        let (t, s) = scoped("subject", v)?;
        ("subject", Some(t), s)
    } else if let Some(v) = &args.jti {
        let (t, j) = scoped("jti", v)?;
        ("jti", Some(t), j)
    } else if let Some(file) = &args.presented_token_file {
        let token = read_token(file).map_err(|e| e.to_string())?;
        let digest = crate::digest::hex(&crate::digest::sha256(token.expose_secret().as_bytes()));
        ("token", None, digest)
    } else if let Some(v) = &args.issuer {
        ("issuer", None, v.clone())
    } else if let Some(v) = &args.target {
        ("target", None, v.clone())
    } else if let Some(v) = &args.minted_jti {
        ("minted", None, v.clone())
    } else {
        return Err(
            "say what to revoke: --subject, --jti, --presented-token-file, --issuer, --target or --minted-jti (or: revoke list | revoke delete ID)"
                .into(),
        );
    };
    let Some(reason) = &args.reason else {
        return Err("say why with --reason (it goes in the audit log)".into());
    };
    let mut body = json!({ "kind": kind, "value": value, "reason": reason });
    if let Some(issuer) = issuer {
        body["issuer"] = Value::String(issuer);
    }
    if let Some(d) = &args.for_ {
        body["for"] = Value::String(d.clone());
    }
    Ok(body)
}

pub(super) fn revoke(args: RevokeArgs) -> ExitCode {
    let (Some(bridge), Some(token_file)) = (&args.bridge, &args.token_file) else {
        return usage("--bridge URL and --token-file FILE (your own token) are required");
    };
    let request = match &args.command {
        Some(RevokeCommand::List) => (reqwest::Method::GET, "/v1/revocations".to_owned(), None),
        Some(RevokeCommand::Delete { id }) => {
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return usage("the id is the revocation's id as listed (rev_...)");
            }
            (
                reqwest::Method::DELETE,
                format!("/v1/revocations/{id}"),
                None,
            )
        }
        None => match body(&args) {
            Ok(b) => (reqwest::Method::POST, "/v1/revocations".to_owned(), Some(b)),
            Err(m) => return usage(&m),
        },
    };
    let token = match read_token(token_file) {
        Ok(t) => t,
        Err(e) => return usage(&e.to_string()),
    };
    let tls = crate::client::ClientTls {
        ca_file: args.ca_file.clone(),
        ..Default::default()
    };
    let client = match BridgeClient::new(bridge, &tls) {
        Ok(c) => c,
        Err(e) => return usage(&e.to_string()),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let (method, path, body) = request;
    let created = method == reqwest::Method::POST;
    match rt.block_on(client.api(method, &path, &token, body.as_ref())) {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            if created {
                print_recall(&answer);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// What stsbridge cannot do itself: credentials already issued live until they expire.
fn print_recall(answer: &Value) {
    if let Some(aws) = answer.get("aws") {
        let roles: Vec<&str> = aws["roles"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        eprintln!(
            "\nAWS credentials already issued for this target stay valid until they expire. To cut them\n\
             short, attach this inline policy ({}) to {}; it denies every session issued before the\n\
             revocation (sessions issued later are unaffected):\n",
            aws["policy_name"]
                .as_str()
                .unwrap_or("stsbridge-revoke-older-sessions"),
            roles.join(", ")
        );
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&aws["policy"]).unwrap_or_default()
        );
    } else {
        eprintln!(
            "\nstsbridge refuses the revoked tokens from now on. Cloud credentials it already issued stay\n\
             valid until they expire; the README's revocation runbook says how to cut them short per cloud."
        );
    }
}
