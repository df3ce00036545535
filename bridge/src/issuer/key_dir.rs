//! The key directory: key files (0600 in a 0700 directory), which key signs and which are
//! published when (`plan_keys`), `keys rotate`, and `issuer export`.

use super::*;

/// A key with the time it was created (from its file name `key-<unix seconds>.pem`, else the
/// file's modification time).
#[derive(Clone)]
pub(super) struct DatedKey {
    pub(super) key: Arc<SigningKey>,
    pub(super) created: SystemTime,
    pub(super) file: Option<PathBuf>,
}

/// Which keys sign and which are published at some time: a pure function of the keys' creation
/// times, `now`, the lead a new key is published before it signs, and how long a replaced key
/// stays published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPlan {
    /// Index of the signing key.
    pub active: usize,
    /// Indices of the published keys (the active one, staged ones, and replaced ones whose
    /// tokens may still be alive).
    pub published: Vec<usize>,
}

/// Plans keys created at `created` (ascending). The newest key older than `lead` signs (the oldest
/// key when none is, since something must sign); newer keys are staged: published, not signing. A
/// replaced key stays published for `retention` after its successor started signing, so that
/// every token it signed expires while it can still be verified.
pub fn plan_keys(
    created: &[SystemTime],
    now: SystemTime,
    lead: Duration,
    retention: Duration,
) -> KeyPlan {
    let eligible = |t: &SystemTime| *t + lead <= now;
    let active = created.iter().rposition(eligible).unwrap_or(0);
    let published = (0..created.len())
        .filter(|&i| {
            if i >= active {
                return true;
            }
            let replaced_at = created[i + 1] + lead;
            now < replaced_at + retention
        })
        .collect();
    KeyPlan { active, published }
}

/// What [`export`] wrote.
#[derive(Debug)]
pub struct Exported {
    /// The discovery document's file.
    pub discovery: PathBuf,
    /// The JWKS's file.
    pub jwks: PathBuf,
    /// The key ids published in it.
    pub kids: Vec<String>,
}

/// Writes the issuer's `/.well-known/openid-configuration` and `/.well-known/jwks.json`, exactly
/// as the service serves them, under `out` (`stsbridge issuer export`), for static hosting where
/// the clouds fetch them. Never creates a key: a key directory without keys is an error, since a
/// key made here would not be the one the service signs with.
pub fn export(config: &IssuerConfig, out: &Path) -> Result<Exported, IssuerError> {
    let Some(dir) = &config.key_dir else {
        return Err(IssuerError::NoKeys(PathBuf::from("issuer.keys.dir")));
    };
    if check_key_dir(dir)? == 0 {
        return Err(IssuerError::NoKeys(dir.clone()));
    }
    let issuer = Issuer::load(config)?;
    let well_known = out.join(".well-known");
    fs::create_dir_all(&well_known).map_err(|e| io_error(&well_known, &e))?;
    let discovery = well_known.join("openid-configuration");
    let jwks = well_known.join("jwks.json");
    for (path, text) in [
        (&discovery, issuer.discovery_json()),
        (&jwks, issuer.jwks_json()),
    ] {
        fs::write(path, text.as_bytes()).map_err(|e| io_error(path, &e))?;
    }
    Ok(Exported {
        discovery,
        jwks,
        kids: issuer.published_kids(),
    })
}

/// Stages a new key in `config`'s key directory (`stsbridge keys rotate`): written now, published
/// by running services at their next key refresh, signing after `publish_before_use`. With
/// `prune`, deletes the files of keys no longer published. Returns the new key id and the pruned
/// files.
pub fn rotate(
    config: &IssuerConfig,
    prune: bool,
    now: SystemTime,
) -> Result<(String, Vec<PathBuf>), IssuerError> {
    let Some(dir) = &config.key_dir else {
        return Err(IssuerError::Io {
            path: PathBuf::new(),
            detail: "the issuer has no key directory".into(),
        });
    };
    let existing = load_or_create_dir(dir, config.algorithm)?;
    let (key, der) = SigningKey::generate(config.algorithm)?;
    let mut secs = unix_seconds(now);
    // One key per second: never two files with one creation time.
    while existing.iter().any(|k| unix_seconds(k.created) >= secs) {
        secs += 1;
    }
    let path = dir.join(format!("key-{secs:012}.pem"));
    write_key_file(&path, &der)?;
    let mut pruned = Vec::new();
    if prune {
        let created: Vec<SystemTime> = existing.iter().map(|k| k.created).collect();
        let plan = plan_keys(
            &created,
            now,
            config.publish_before_use,
            retention_for(config.assertion_lifetime),
        );
        for (i, k) in existing.iter().enumerate() {
            if !plan.published.contains(&i)
                && let Some(file) = &k.file
            {
                fs::remove_file(file).map_err(|e| io_error(file, &e))?;
                pruned.push(file.clone());
            }
        }
    }
    Ok((key.kid, pruned))
}

pub(super) fn io_error(path: &Path, e: &std::io::Error) -> IssuerError {
    IssuerError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Loads every `*.pem` key in `dir`, oldest first; creates the directory (mode 0700) and one key
/// (mode 0600) when there is none.
pub(super) fn load_or_create_dir(
    dir: &Path,
    alg: SigningAlgorithm,
) -> Result<Vec<DatedKey>, IssuerError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_error(dir, &e))?;
    }
    let keys = read_dir_keys(dir, &[])?;
    if !keys.is_empty() {
        return Ok(keys);
    }
    let (key, der) = SigningKey::generate(alg)?;
    let now = SystemTime::now();
    let path = dir.join(format!("key-{:012}.pem", unix_seconds(now)));
    write_key_file(&path, &der)?;
    tracing::info!(kid = %key.kid, path = %path.display(), "generated a new signing key");
    Ok(vec![DatedKey {
        key: Arc::new(key),
        created: created_at(&path).unwrap_or(now),
        file: Some(path),
    }])
}

/// The keys of `dir`, oldest first, reusing the parsed keys of `known` for files already loaded.
pub(super) fn read_dir_keys(dir: &Path, known: &[DatedKey]) -> Result<Vec<DatedKey>, IssuerError> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| io_error(dir, &e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    files.sort();
    let mut keys = Vec::with_capacity(files.len());
    for path in files {
        let key = match known.iter().find(|k| k.file.as_ref() == Some(&path)) {
            Some(k) => Arc::clone(&k.key),
            None => Arc::new(read_key_file(&path)?),
        };
        let created = created_at(&path).map_err(|e| io_error(&path, &e))?;
        keys.push(DatedKey {
            key,
            created,
            file: Some(path),
        });
    }
    keys.sort_by_key(|k| k.created);
    Ok(keys)
}

/// A key file's creation time: the seconds in its name `key-<unix seconds>.pem`, else its
/// modification time.
pub(super) fn created_at(path: &Path) -> std::io::Result<SystemTime> {
    let from_name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("key-"))
        .and_then(|s| s.parse::<u64>().ok());
    match from_name {
        Some(secs) => Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        None => fs::metadata(path)?.modified(),
    }
}

/// Checks the key files of `dir` without creating anything (`stsbridge check`); returns how many
/// keys it holds (0 for a missing or empty directory, which gets a key on first start).
pub fn check_key_dir(dir: &Path) -> Result<usize, IssuerError> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut count = 0;
    for entry in fs::read_dir(dir).map_err(|e| io_error(dir, &e))? {
        let path = entry.map_err(|e| io_error(dir, &e))?.path();
        if path.extension().is_some_and(|x| x == "pem") {
            read_key_file(&path)?;
            count += 1;
        }
    }
    Ok(count)
}

pub(super) fn write_key_file(path: &Path, der: &[u8]) -> Result<(), IssuerError> {
    let pem = Zeroizing::new(pem::encode(&pem::Pem::new(PEM_LABEL, der.to_vec())));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, &e))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(path, &e))
}

/// Whether a key file of `mode`, group `gid`, is private enough: readable and writable by its
/// owner only (0600 or less); or, as PostgreSQL accepts for its key file, also readable (not
/// writable) by its group when that group is one of this process's own, which is how Kubernetes
/// mounts a Secret for a pod with `fsGroup` (0440, root:fsGroup).
fn private_enough(mode: u32, gid: u32) -> bool {
    mode & 0o077 == 0 || (mode & 0o037 == 0 && process_in_group(gid))
}

fn process_in_group(gid: u32) -> bool {
    rustix::process::getegid().as_raw() == gid
        || rustix::process::getgid().as_raw() == gid
        || rustix::process::getgroups().is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
}

pub(super) fn read_key_file(path: &Path) -> Result<SigningKey, IssuerError> {
    let meta = fs::metadata(path).map_err(|e| io_error(path, &e))?;
    let mode = meta.permissions().mode() & 0o777;
    if !private_enough(mode, std::os::unix::fs::MetadataExt::gid(&meta)) {
        return Err(IssuerError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(|e| io_error(path, &e))?);
    let parsed = pem::parse(text.as_bytes()).map_err(|_| IssuerError::BadKey {
        path: path.to_path_buf(),
    })?;
    if parsed.tag() != PEM_LABEL {
        return Err(IssuerError::BadKey {
            path: path.to_path_buf(),
        });
    }
    let der = Zeroizing::new(parsed.into_contents());
    SigningKey::from_pkcs8(&der).ok_or_else(|| IssuerError::BadKey {
        path: path.to_path_buf(),
    })
}
