//! Rendered values cut to each cloud's character set and length limits.
//!
//! Templates read caller-controlled claims, so a rendered value can hold anything. Rather than fail
//! an exchange over a stray character, each field replaces what the cloud would refuse and cuts to
//! its length; the result is deterministic, so equal inputs still share one cache entry.

/// A field with cloud-imposed limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// AWS `RoleSessionName`: 2-64 chars of `[\w+=,.@-]`.
    AwsSessionName,
    /// AWS `SourceIdentity`: 2-64 chars of `[\w+=,.@-]`, not starting with `aws:`.
    AwsSourceIdentity,
    /// AWS session tag value: up to 256 chars of letters, digits, spaces and `_.:/=+-@`.
    AwsTagValue,
    /// AWS `ExternalId`: 2-1224 chars of `[\w+=,.@:/-]`.
    AwsExternalId,
    /// The `sub` of a minted assertion: 1-127 bytes of printable ASCII (Google's limit is 127
    /// bytes, the tightest of the clouds).
    AssertionSubject,
    /// The `sub` of an internal JWT: up to 255 chars, no control characters.
    JwtSubject,
}

impl Field {
    fn limits(self) -> (usize, usize) {
        match self {
            Field::AwsSessionName | Field::AwsSourceIdentity => (2, 64),
            Field::AwsTagValue => (0, 256),
            Field::AwsExternalId => (2, 1224),
            Field::AssertionSubject => (1, 127),
            Field::JwtSubject => (1, 255),
        }
    }

    fn allows(self, c: char) -> bool {
        let word = c.is_ascii_alphanumeric() || c == '_';
        match self {
            Field::AwsSessionName | Field::AwsSourceIdentity => word || "+=,.@-".contains(c),
            Field::AwsExternalId => word || "+=,.@:/-".contains(c),
            Field::AwsTagValue => c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c),
            Field::AssertionSubject => c.is_ascii_graphic(),
            Field::JwtSubject => !c.is_control(),
        }
    }

    /// `c`, or the filler when the field refuses it.
    fn clean(self, c: char) -> char {
        if self.allows(c) { c } else { self.filler() }
    }

    /// The character that stands in for refused ones (and pads short values).
    fn filler(self) -> char {
        match self {
            Field::AwsTagValue => '_',
            _ => '-',
        }
    }
}

/// `value` with every refused character replaced, cut to the maximum and padded to the minimum.
/// Lengths are counted in characters, which equals bytes for the ASCII-only fields.
pub fn sanitize(field: Field, value: &str) -> String {
    let (min, max) = field.limits();
    // The common case, a value the field takes as it is: copied whole (ASCII, so bytes are
    // characters).
    if value.is_ascii()
        && (min..=max).contains(&value.len())
        && value.bytes().all(|b| field.allows(char::from(b)))
        && !(field == Field::AwsSourceIdentity
            && value[..value.len().min(4)].eq_ignore_ascii_case("aws:"))
    {
        return value.to_owned();
    }
    sanitize_chars(field, value)
}

/// [`sanitize`] character by character, whatever the value.
fn sanitize_chars(field: Field, value: &str) -> String {
    let (min, max) = field.limits();
    let mut out: String = value.chars().map(|c| field.clean(c)).take(max).collect();
    if field == Field::AwsSourceIdentity && out.to_ascii_lowercase().starts_with("aws:") {
        out.replace_range(3..4, "-");
    }
    while out.chars().count() < min {
        out.push(field.filler());
    }
    out
}

/// `value` with each character the field refuses replaced, as [`sanitize`] does, but neither cut
/// nor padded: for the literal parts of a pattern.
pub fn clean_chars(field: Field, value: &str) -> String {
    value.chars().map(|c| field.clean(c)).collect()
}

/// Whether `value` already satisfies the field (used for values fixed in mapping files, which are
/// refused at load time rather than silently changed).
pub fn is_valid(field: Field, value: &str) -> bool {
    sanitize(field, value) == value
}

/// AWS tag keys: 1-128 chars of letters, digits, spaces and `_.:/=+-@`, not starting with `aws:`.
pub fn valid_aws_tag_key(key: &str) -> bool {
    let n = key.chars().count();
    (1..=128).contains(&n)
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c))
        && !key.to_ascii_lowercase().starts_with("aws:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_aws() {
        assert_eq!(
            sanitize(
                Field::AwsSessionName,
                "repo:acme/payments:ref:refs/heads/main"
            ),
            "repo-acme-payments-ref-refs-heads-main"
        );
        assert_eq!(sanitize(Field::AwsSessionName, "x"), "x-");
        assert_eq!(sanitize(Field::AwsSessionName, ""), "--");
        assert_eq!(sanitize(Field::AwsSessionName, &"a".repeat(100)).len(), 64);
        assert_eq!(sanitize(Field::AwsSessionName, "ünïcode"), "-n-code");
        assert!(is_valid(Field::AwsSessionName, "gh-42_a+b=c,d.e@f"));
    }

    #[test]
    fn tag_values_keep_unicode_letters_and_cut_at_256() {
        assert_eq!(
            sanitize(Field::AwsTagValue, "acme/payments é"),
            "acme/payments é"
        );
        assert_eq!(sanitize(Field::AwsTagValue, "a;b|c"), "a_b_c");
        assert_eq!(
            sanitize(Field::AwsTagValue, &"ж".repeat(300))
                .chars()
                .count(),
            256
        );
        assert_eq!(sanitize(Field::AwsTagValue, ""), "");
    }

    #[test]
    fn source_identity_may_not_claim_the_aws_prefix() {
        assert_eq!(sanitize(Field::AwsSourceIdentity, "aws:admin"), "aws-admin");
        assert_eq!(sanitize(Field::AwsSourceIdentity, "AWS:x"), "AWS-x");
    }

    #[test]
    fn assertion_subjects_fit_google_127_bytes() {
        let s = sanitize(
            Field::AssertionSubject,
            &format!("target:{}", "é".repeat(200)),
        );
        assert!(s.len() <= 127 && s.is_ascii(), "{s}");
        assert_eq!(
            sanitize(Field::AssertionSubject, "target:a b"),
            "target:a-b"
        );
    }

    #[test]
    fn external_ids_allow_colon_and_slash() {
        assert!(is_valid(Field::AwsExternalId, "stsbridge:payments/prod"));
        assert!(!is_valid(Field::AwsExternalId, "a"));
    }

    #[test]
    fn values_taken_as_they_are_come_out_as_the_character_by_character_path_makes_them() {
        let fields = [
            Field::AwsSessionName,
            Field::AwsSourceIdentity,
            Field::AwsTagValue,
            Field::AwsExternalId,
            Field::AssertionSubject,
            Field::JwtSubject,
        ];
        let long = "a".repeat(300);
        let values = [
            "",
            "a",
            "ab",
            "aws:x",
            "AWS:",
            "aws",
            "gh-42_a+b=c,d.e@f",
            "a b",
            "a:b/c",
            "é",
            "x\u{7}y",
            "~!#",
            long.as_str(),
            &long[..64],
            &long[..65],
            &long[..127],
            &long[..128],
        ];
        for field in fields {
            for value in values {
                assert_eq!(
                    sanitize(field, value),
                    sanitize_chars(field, value),
                    "{field:?} {value:?}"
                );
            }
        }
    }

    #[test]
    fn tag_keys() {
        assert!(valid_aws_tag_key("repository"));
        assert!(!valid_aws_tag_key("aws:thing"));
        assert!(!valid_aws_tag_key(""));
        assert!(!valid_aws_tag_key("bad;key"));
        assert!(!valid_aws_tag_key(&"k".repeat(129)));
    }
}
