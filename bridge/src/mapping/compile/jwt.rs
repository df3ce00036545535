//! Internal JWT targets: audience, scopes, lifetime, subject.

use super::*;

impl Builder {
    pub(super) fn jwt_target(
        &mut self,
        file: &Path,
        at: &str,
        j: file::JwtTargetFile,
    ) -> Option<JwtTarget> {
        let before = self.errors.len();
        if j.audience.is_empty() {
            self.err(file, format!("{at}.audience"), "must not be empty".into());
        }
        for (k, s) in j.scopes.iter().enumerate() {
            if !valid_scope_token(s) {
                self.err(
                    file,
                    format!("{at}.scopes[{k}]"),
                    format!("{s:?} is not an OAuth scope token (printable ASCII, no spaces)"),
                );
            }
        }
        let lifetime = j.lifetime.map_or(DEFAULT_JWT_LIFETIME, |d| d.0);
        if lifetime < MIN_JWT_LIFETIME || lifetime > MAX_JWT_LIFETIME {
            self.err(
                file,
                format!("{at}.lifetime"),
                format!(
                    "{} is out of range; internal tokens live between {} and {}",
                    format_duration(lifetime),
                    format_duration(MIN_JWT_LIFETIME),
                    format_duration(MAX_JWT_LIFETIME)
                ),
            );
        }
        let reference = match j.format.as_deref() {
            None | Some("jwt") => false,
            Some("reference") => true,
            Some(other) => {
                self.err(
                    file,
                    format!("{at}.format"),
                    format!("{other:?} is not a format; use jwt (default) or reference"),
                );
                false
            }
        };
        let bind = match j.bind.as_deref() {
            None => None,
            Some("mtls") => Some(Binding::Mtls),
            Some("dpop") => Some(Binding::Dpop),
            Some(other) => {
                self.err(
                    file,
                    format!("{at}.bind"),
                    format!(
                        "{other:?} is not a binding; use mtls (the caller's TLS client certificate) or dpop (the key of its DPoP proofs)"
                    ),
                );
                None
            }
        };
        let subject = j
            .subject
            .as_deref()
            .map(|text| self.template(file, format!("{at}.subject"), text));
        if self.errors.len() > before {
            return None;
        }
        let mut scopes = j.scopes;
        scopes.sort();
        scopes.dedup();
        Some(JwtTarget {
            audience: j.audience,
            scopes,
            lifetime,
            subject: subject.flatten(),
            reference,
            bind,
        })
    }
}
