//! The rule index: per trust entry, exact subjects in a hash map and pattern subjects in one glob
//! set and one regex set (or tested one by one when few), so a decision never scans every rule.

use super::*;

#[derive(Debug, Default)]
pub(super) struct IssuerIndex {
    pub(super) exact: HashMap<String, Vec<usize>>,
    pub(super) globs: Option<(GlobSet, Vec<usize>)>,
    pub(super) regexes: Option<(RegexSet, Vec<usize>)>,
    pub(super) any: Vec<usize>,
    /// Glob and regex rules of an issuer with few of them, tested one by one with their own
    /// matchers: building a set for a handful costs more at load than it saves per decision.
    pub(super) few: Vec<usize>,
    pub(super) all: Vec<usize>,
    /// Some of the issuer's rules are in audit mode.
    pub(super) audit: bool,
}

/// Up to this many glob (or regex) subjects per issuer are tested one by one rather than as a set.
const FEW_PATTERNS: usize = 4;

pub(super) fn build_index(rules: &[Rule]) -> Result<HashMap<String, IssuerIndex>, String> {
    let mut index: HashMap<String, IssuerIndex> = HashMap::new();
    let mut globs: HashMap<&str, (GlobSetBuilder, Vec<usize>)> = HashMap::new();
    let mut regexes: HashMap<&str, (Vec<String>, Vec<usize>)> = HashMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let ix = index.entry(rule.issuer.clone()).or_default();
        ix.all.push(i);
        ix.audit |= rule.mode == RuleMode::Audit;
        match &rule.subject {
            SubjectMatcher::Any => ix.any.push(i),
            SubjectMatcher::Is(Matcher::Exact(s)) => ix.exact.entry(s.clone()).or_default().push(i),
            SubjectMatcher::Is(Matcher::OneOf(list)) => {
                for s in list {
                    ix.exact.entry(s.clone()).or_default().push(i);
                }
            }
            SubjectMatcher::Is(Matcher::Glob(p, _)) => {
                let (b, ids) = globs
                    .entry(&rule.issuer)
                    .or_insert_with(|| (GlobSetBuilder::new(), Vec::new()));
                b.add(globset::Glob::new(p).map_err(|e| e.to_string())?);
                ids.push(i);
            }
            SubjectMatcher::Is(Matcher::Regex(p, _)) => {
                let (ps, ids) = regexes.entry(&rule.issuer).or_default();
                ps.push(format!("^(?:{p})$"));
                ids.push(i);
            }
            // compile_subject never produces the other matchers
            SubjectMatcher::Is(_) => ix.any.push(i),
        }
    }
    for (issuer, (builder, ids)) in globs {
        if ids.len() <= FEW_PATTERNS {
            if let Some(ix) = index.get_mut(issuer) {
                ix.few.extend(ids);
            }
            continue;
        }
        let set = builder
            .build()
            .map_err(|e| format!("subject globs of {issuer}: {e}"))?;
        if let Some(ix) = index.get_mut(issuer) {
            ix.globs = Some((set, ids));
        }
    }
    for (issuer, (patterns, ids)) in regexes {
        if ids.len() <= FEW_PATTERNS {
            if let Some(ix) = index.get_mut(issuer) {
                ix.few.extend(ids);
            }
            continue;
        }
        let set = regex::RegexSetBuilder::new(patterns)
            .size_limit(64 << 20)
            .build()
            .map_err(|e| format!("subject regexes of {issuer}: {e}"))?;
        if let Some(ix) = index.get_mut(issuer) {
            ix.regexes = Some((set, ids));
        }
    }
    Ok(index)
}

impl Mappings {
    /// Indices of the rules of `trust` whose subject test passes, in file order.
    pub(super) fn candidates(&self, trust: &str, subject: &str) -> Vec<usize> {
        let Some(ix) = self.index.get(trust) else {
            return Vec::new();
        };
        let mut out: Vec<usize> = ix.exact.get(subject).cloned().unwrap_or_default();
        if let Some((set, rules)) = &ix.globs {
            out.extend(set.matches(subject).into_iter().map(|m| rules[m]));
        }
        if let Some((set, rules)) = &ix.regexes {
            out.extend(set.matches(subject).into_iter().map(|m| rules[m]));
        }
        out.extend(
            ix.few
                .iter()
                .copied()
                .filter(|&i| self.rules[i].subject_matches(subject)),
        );
        out.extend_from_slice(&ix.any);
        out.sort_unstable();
        out.dedup();
        out
    }
}
