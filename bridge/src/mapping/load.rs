//! Loading: every mapping file of a directory is parsed and compiled as one set (on every core
//! when there are thousands), and any error fails the whole load.

use super::*;

impl Mappings {
    /// Loads every mapping file in `dir`; rules may only name issuers in `trust_names`.
    pub fn load(dir: &Path, trust_names: &HashSet<String>) -> Result<Mappings, ConfigErrors> {
        let files = mapping_files(dir)?;
        let mut sources = Vec::with_capacity(files.len());
        let mut errors = Vec::new();
        for path in files {
            match crate::config::read_text(&path) {
                Ok(text) => sources.push((path, text)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Self::compile(dir, &sources, trust_names)
    }

    /// Compiles mapping files given as (path, text); `dir` names the set in errors of the whole.
    /// Session policy files are read relative to each file's path.
    pub fn compile(
        dir: &Path,
        sources: &[(PathBuf, String)],
        trust_names: &HashSet<String>,
    ) -> Result<Mappings, ConfigErrors> {
        let files: Vec<PathBuf> = sources.iter().map(|(p, _)| p.clone()).collect();
        let mut b = Builder {
            errors: Vec::new(),
            targets: HashMap::new(),
            rules: Vec::new(),
            declared: Arc::default(),
        };
        let mut declared = HashSet::new();
        let mut raw_rules = Vec::new();
        let mut placed: Vec<(PathBuf, usize, String)> = Vec::new();
        let mut partner_trust: Vec<(PathBuf, Vec<TrustConfig>)> = Vec::new();
        for ((path, text), parsed) in sources.iter().zip(parse_all(sources)) {
            match parsed {
                Err(e) => {
                    b.errors.extend(e.0);
                    declared.extend(declared_targets(text));
                }
                Ok(raw) => {
                    if raw.version != CONFIG_VERSION {
                        b.errors.push(ConfigError::new(
                            path,
                            "version",
                            format!(
                                "unsupported version {}; this build reads version {CONFIG_VERSION}",
                                raw.version
                            ),
                        ));
                        continue;
                    }
                    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                    let mut entries = Vec::new();
                    for (i, t) in raw.trust.into_iter().enumerate() {
                        let mut entry = crate::config::compile_trust(
                            path,
                            &base,
                            &format!("trust[{i}]"),
                            t,
                            &mut b.errors,
                        );
                        entry.lazy_jwks = true;
                        entries.push(entry);
                    }
                    if !entries.is_empty() {
                        partner_trust.push((path.clone(), entries));
                    }
                    for (i, t) in raw.targets.into_iter().enumerate() {
                        declared.insert(t.name.clone());
                        placed.push((path.clone(), i, t.name.clone()));
                        b.target(path, i, t);
                    }
                    raw_rules.extend(
                        raw.rules
                            .into_iter()
                            .enumerate()
                            .map(|(i, r)| (path.clone(), i, r)),
                    );
                }
            }
        }
        // Rules second: they refer to targets of any file, and to trust entries of the config or of
        // any partner file.
        let mut all_names = trust_names.clone();
        all_names.insert(OWN_TRUST.to_owned());
        for (_, entries) in &partner_trust {
            all_names.extend(entries.iter().map(|t| t.name.clone()));
        }
        let trust_names = &all_names;
        let sets: Vec<(&Path, &[TrustConfig])> = partner_trust
            .iter()
            .map(|(p, e)| (p.as_path(), e.as_slice()))
            .collect();
        b.errors.extend(crate::config::check_unique_trust(&sets));
        let mut rule_names = HashSet::new();
        for (path, i, r) in &raw_rules {
            if !rule_names.insert(r.name.as_str()) {
                b.errors.push(ConfigError::new(
                    path,
                    format!("rules[{i}].name"),
                    format!("{:?} is also the name of another rule", r.name),
                ));
            }
        }
        let (rules, errors) =
            compile_rules(&b.targets, &Arc::new(declared), raw_rules, trust_names);
        b.rules = rules;
        b.errors.extend(errors);
        let placed: Vec<scopes::Placed<'_>> = placed
            .iter()
            .filter_map(|(file, index, name)| {
                let target = b.targets.get(name).filter(|t| &t.file == file)?;
                Some(scopes::Placed {
                    file,
                    index: *index,
                    target,
                })
            })
            .collect();
        let scope_errors = scopes::check(&placed);
        b.errors.extend(scope_errors);
        if !b.errors.is_empty() {
            return Err(ConfigErrors(b.errors));
        }
        let index = build_index(&b.rules).map_err(|m| ConfigError::new(dir, ".", m))?;
        Ok(Mappings {
            targets: b.targets,
            rules: b.rules,
            index,
            files,
            partner_trust,
        })
    }

    /// Loads the mappings of `dir` and returns them with the whole trust list: `config_trust`
    /// (from `config_file`) plus the trust entries of partner files, which must not repeat a
    /// name or an issuer.
    pub fn load_with_trust(
        dir: &Path,
        config_trust: &[TrustConfig],
        config_file: &Path,
    ) -> Result<(Mappings, Vec<TrustConfig>), ConfigErrors> {
        let names: HashSet<String> = config_trust.iter().map(|t| t.name.clone()).collect();
        let mappings = Self::load(dir, &names)?;
        let mut sets: Vec<(&Path, &[TrustConfig])> = vec![(config_file, config_trust)];
        sets.extend(
            mappings
                .partner_trust
                .iter()
                .map(|(p, e)| (p.as_path(), e.as_slice())),
        );
        let errors = crate::config::check_unique_trust(&sets);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut trust = config_trust.to_vec();
        trust.extend(
            mappings
                .partner_trust
                .iter()
                .flat_map(|(_, e)| e.iter().cloned()),
        );
        Ok((mappings, trust))
    }
}

/// The issuer names the rules in `dir` (and their `actors:`) refer to that no partner file there
/// defines and that are not built in (dev mode trusts a built-in issuer for each).
pub fn referenced_issuers(dir: &Path) -> Result<BTreeSet<String>, ConfigErrors> {
    let mut out = BTreeSet::new();
    // stsbridge's own tokens are built in, never a dev issuer.
    let mut defined = BTreeSet::from([OWN_TRUST.to_owned()]);
    for path in mapping_files(dir)? {
        let raw: file::MappingFile = read_yaml(&path)?;
        for rule in raw.rules {
            out.extend(rule.actors.into_iter().map(|a| a.issuer));
            out.insert(rule.issuer);
        }
        defined.extend(raw.trust.into_iter().map(|t| t.name));
    }
    Ok(out.difference(&defined).cloned().collect())
}

/// The `*.yaml`/`*.yml` files directly in `dir`, sorted.
pub(super) fn mapping_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::new(dir, ".", format!("cannot read the mappings directory: {e}"))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Compiles rules in order, on every core when there are many.
fn compile_rules(
    targets: &HashMap<String, Arc<Target>>,
    declared: &Arc<HashSet<String>>,
    raw: Vec<(PathBuf, usize, file::RuleFile)>,
    trust_names: &HashSet<String>,
) -> (Vec<Rule>, Vec<ConfigError>) {
    let compile = |part: Vec<(PathBuf, usize, file::RuleFile)>| {
        let mut b = Builder {
            errors: Vec::new(),
            targets: targets.clone(),
            rules: Vec::new(),
            declared: Arc::clone(declared),
        };
        for (path, i, r) in part {
            b.rule(&path, i, r, trust_names);
        }
        (b.rules, b.errors)
    };
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if raw.len() < 256 || threads < 2 {
        return compile(raw);
    }
    let chunk = raw.len().div_ceil(threads);
    let mut parts = Vec::new();
    let mut rest = raw;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        parts.push(rest);
        rest = tail;
    }
    parts.push(rest);
    std::thread::scope(|scope| {
        let workers: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || compile(part)))
            .collect();
        let (mut rules, mut errors) = (Vec::new(), Vec::new());
        for w in workers {
            let (r, e) = w
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            rules.extend(r);
            errors.extend(e);
        }
        (rules, errors)
    })
}

/// The target names a mapping file that did not parse declares (`targets[*].name`), read from
/// its YAML as far as it goes.
fn declared_targets(text: &str) -> Vec<String> {
    let Ok(doc) = serde_yaml_ng::from_str::<Yaml>(text) else {
        return Vec::new();
    };
    doc.get("targets")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("name").and_then(Yaml::as_str).map(str::to_owned))
        .collect()
}

/// Parses mapping files, on every core when there are many (thousands of partner files).
fn parse_all(sources: &[(PathBuf, String)]) -> Vec<Result<file::MappingFile, ConfigErrors>> {
    let parse = |(path, text): &(PathBuf, String)| crate::config::parse_yaml(path, text);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    if sources.len() < 256 || threads < 2 {
        return sources.iter().map(parse).collect();
    }
    let chunk = sources.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = sources
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(parse).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}
