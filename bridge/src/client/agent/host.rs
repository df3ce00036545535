//! Which `Host` the agent answers: a defence against DNS rebinding.
//!
//! Binding loopback keeps other machines out, but not a browser on the same machine: a page from
//! `attacker.example` can re-point its own name at 127.0.0.1 and read the agent's answers, because
//! to the browser that is still its own origin. Such a request carries the attacker's name in
//! `Host`, while every SDK addresses the agent by the loopback address in its environment (or, on a
//! platform that routes the cloud's metadata address to it, by that address or name). So a request
//! is answered only when its `Host` is one of those.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Host names the clouds' SDKs use for their metadata or credential endpoints, and `localhost`.
const ALLOWED_NAMES: [&str; 3] = ["localhost", "metadata.google.internal", "metadata"];

/// The link-local addresses of the clouds' credential endpoints: the EC2 / GCE / Azure metadata
/// address, and the ECS and EKS Pod Identity container-credentials addresses (the only
/// non-loopback plain-HTTP hosts the AWS SDKs accept).
const ALLOWED_V4: [Ipv4Addr; 3] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
];

/// EKS Pod Identity's IPv6 container-credentials address, `fd00:ec2::23`.
const ALLOWED_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)];

/// How much of a refused `Host` is logged: enough to recognise the name, not a log line an
/// attacker can fill.
const MAX_LOGGED_HOST: usize = 64;

/// Whether `host` (a `Host` header value: a name or address, with an optional port, IPv6 in
/// brackets) addresses the agent as a local credential endpoint: a loopback address
/// (127.0.0.0/8, `::1`), `localhost`, or a cloud metadata host name or address. Case-insensitive;
/// the port is not checked (the agent is reached by whatever port it was given).
pub fn is_allowed_host(host: &str) -> bool {
    let Some(name) = strip_port(host) else {
        return false;
    };
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6
            .parse::<Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback() || ALLOWED_V6.contains(&ip));
    }
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback() || ALLOWED_V4.contains(&ip),
        // An IPv6 address is only ever valid in brackets.
        Ok(IpAddr::V6(_)) => false,
        Err(_) => ALLOWED_NAMES.iter().any(|n| n.eq_ignore_ascii_case(name)),
    }
}

/// `host` without its `:port`, or `None` when the port is not a number.
fn strip_port(host: &str) -> Option<&str> {
    // The last colon is a port separator unless it is inside IPv6 brackets.
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => {
            let port = &host[i + 1..];
            // Digits only: `u16::from_str` would also take a sign.
            let valid = port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
            (valid && !host[..i].is_empty()).then(|| &host[..i])
        }
        _ => (!host.is_empty()).then_some(host),
    }
}

/// Middleware: answers 403 to a request whose `Host` is missing, repeated or not
/// [allowed](is_allowed_host), before any handler (so before any credential is fetched). An
/// absolute-form request target must name an allowed host too.
pub async fn require_local_host(request: Request, next: Next) -> Response {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host,
        (None, _) => return refuse(None),
        (Some(host), Some(_)) => return refuse(Some(host)),
    };
    let allowed = host.to_str().is_ok_and(is_allowed_host)
        && request
            .uri()
            .authority()
            .is_none_or(|a| is_allowed_host(a.as_str()));
    if !allowed {
        return refuse(Some(host));
    }
    next.run(request).await
}

fn refuse(host: Option<&HeaderValue>) -> Response {
    let shown: String = host
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .unwrap_or_default()
        .chars()
        .take(MAX_LOGGED_HOST)
        .collect();
    tracing::warn!(host = ?shown, "refused a request not addressed to a local host (DNS rebinding?)");
    let mut response = (
        StatusCode::FORBIDDEN,
        "the agent answers only requests addressed to a loopback address, localhost or a cloud metadata host\n",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_literals_localhost_and_metadata_hosts_are_allowed() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:8090",
            "127.3.4.5:1",
            "[::1]",
            "[::1]:8090",
            "localhost",
            "LocalHost:8090",
            "metadata.google.internal",
            "METADATA.google.internal:80",
            "metadata",
            "169.254.169.254",
            "169.254.169.254:80",
            "169.254.170.2:80",
            "169.254.170.23",
            "[fd00:ec2::23]:80",
            "[FD00:EC2::23]",
        ] {
            assert!(is_allowed_host(host), "{host} should be allowed");
        }
    }

    #[test]
    fn other_names_and_addresses_are_refused() {
        for host in [
            "attacker.example",
            "attacker.example:8090",
            // Names that only look local.
            "localhost.attacker.example",
            "127.0.0.1.attacker.example",
            "metadata.google.internal.attacker.example",
            "localhost.",
            "xlocalhost",
            // Addresses that are not the agent's.
            "10.0.0.1",
            "0.0.0.0:8090",
            "169.254.169.253",
            "128.0.0.1",
            "[::2]:8090",
            "[fd00:ec2::24]",
            // IPv6 without brackets is not a valid Host.
            "::1",
            "fd00:ec2::23",
            // Malformed ports and empty values.
            "127.0.0.1:",
            "127.0.0.1:http",
            "127.0.0.1:+80",
            "127.0.0.1:65536",
            "[::1]:x",
            ":8090",
            "",
            "[::1",
            "::1]",
        ] {
            assert!(!is_allowed_host(host), "{host:?} should be refused");
        }
    }
}
