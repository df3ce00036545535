//! Configuration errors, each naming the file, the field path and the bad value; and reading a
//! YAML file into them.

use super::*;

/// One problem in a config or mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Field path inside it, like `trust[0].jwks.uri` (`.` for the whole file).
    pub path: String,
    /// What is wrong, quoting the bad value.
    pub message: String,
}

impl ConfigError {
    /// A problem at `path` in `file`.
    pub fn new(file: &Path, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.path,
            self.message
        )
    }
}

/// Every problem found in a set of files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Reads a YAML file into `T`, with errors that name the file and the field path.
pub fn read_yaml<T: DeserializeOwned>(file: &Path) -> Result<T, ConfigErrors> {
    let text = read_text(file)?;
    parse_yaml(file, &text)
}

/// Reads a text file no larger than [`MAX_CONFIG_FILE_BYTES`].
pub fn read_text(file: &Path) -> Result<String, ConfigError> {
    let meta = std::fs::metadata(file)
        .map_err(|e| ConfigError::new(file, ".", format!("cannot read the file: {e}")))?;
    if meta.len() > MAX_CONFIG_FILE_BYTES {
        return Err(ConfigError::new(
            file,
            ".",
            format!(
                "the file is {} bytes; the limit is {MAX_CONFIG_FILE_BYTES}",
                meta.len()
            ),
        ));
    }
    std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(file, ".", format!("cannot read the file: {e}")))
}

/// Parses YAML text into `T`, with errors that name the file and the field path: every one of
/// them, not only the first (see [`later_errors`]).
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigErrors> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    match serde_path_to_error::deserialize(de) {
        Ok(value) => Ok(value),
        Err(e) => {
            let first = path_error(file, e);
            let mut all = vec![first.clone()];
            all.extend(later_errors::<T>(file, text, &first.path));
            Err(ConfigErrors(all))
        }
    }
}

fn path_error<E: std::fmt::Display>(file: &Path, e: serde_path_to_error::Error<E>) -> ConfigError {
    let path = e.path().to_string();
    let message = e.into_inner().to_string();
    // The YAML error repeats the path it failed in ("a.b: unknown field ..."); say it once.
    let message = match message.split_once(": ") {
        Some((prefix, rest)) if path.starts_with(prefix) => rest.to_owned(),
        _ => message,
    };
    ConfigError::new(file, path, message)
}

/// Most errors reported for one file.
const MAX_ERRORS_PER_FILE: usize = 50;

/// The errors after the first: serde stops at the first, so the part that failed (the list item
/// it is in, else its top-level key) is taken out of the document and the rest deserialized
/// again, until it deserializes or nothing more can be taken out. List items keep the index
/// they have in the file.
fn later_errors<T: DeserializeOwned>(file: &Path, text: &str, first: &str) -> Vec<ConfigError> {
    let Ok(mut doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) else {
        return Vec::new();
    };
    // For each list taken from, the file's index of each item still in the document.
    let mut kept: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
    let mut out = Vec::new();
    let mut failed_at = first.to_owned();
    while out.len() < MAX_ERRORS_PER_FILE {
        let Some(taken) = take_out(&mut doc, &failed_at, &mut kept) else {
            break;
        };
        match serde_path_to_error::deserialize::<_, T>(doc.clone()) {
            Ok(_) => break,
            Err(e) => {
                let mut error = path_error(file, e);
                // Taking out a required key makes its absence the next error: that one is ours,
                // not the file's, and nothing after it can be told apart.
                if taken
                    .as_deref()
                    .is_some_and(|key| error.message.contains(&format!("missing field `{key}`")))
                {
                    break;
                }
                failed_at.clone_from(&error.path);
                error.path = in_file(&error.path, &kept);
                out.push(error);
            }
        }
    }
    out
}

/// `path` (`rules[2].allow`, `cache.max_entires`) split at its first list index: the list's path,
/// the index and the rest.
fn first_index(path: &str) -> Option<(&str, usize, &str)> {
    let open = path.find('[')?;
    let close = open + path[open..].find(']')?;
    let index = path[open + 1..close].parse().ok()?;
    Some((&path[..open], index, &path[close + 1..]))
}

/// The path as the file numbers its list items.
fn in_file(path: &str, kept: &std::collections::HashMap<String, Vec<usize>>) -> String {
    match first_index(path) {
        Some((list, i, rest)) => {
            let original = kept.get(list).and_then(|k| k.get(i).copied()).unwrap_or(i);
            format!("{list}[{original}]{rest}")
        }
        None => path.to_owned(),
    }
}

/// Takes the part of `doc` that failed at `path` out of it: the list item it is in (`Some(None)`),
/// else the key it names (`Some(Some(key))`); `None` when there is nothing to take.
fn take_out(
    doc: &mut serde_yaml_ng::Value,
    path: &str,
    kept: &mut std::collections::HashMap<String, Vec<usize>>,
) -> Option<Option<String>> {
    use serde_yaml_ng::Value;
    let keys = |p: &str| -> Vec<String> {
        p.split('.')
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if let Some((list, i, _)) = first_index(path) {
        let mut node = &mut *doc;
        for key in keys(list) {
            node = node.get_mut(key.as_str())?;
        }
        let Value::Sequence(items) = node else {
            return None;
        };
        if i >= items.len() {
            return None;
        }
        items.remove(i);
        let indices = kept
            .entry(list.to_owned())
            .or_insert_with(|| (0..=items.len()).collect());
        if i < indices.len() {
            indices.remove(i);
        }
        return Some(None);
    }
    // No list: the key itself (an unknown or mistyped one), so its siblings are still checked.
    let mut path_keys = keys(path);
    let leaf = path_keys.pop()?;
    let mut node = &mut *doc;
    for key in path_keys {
        node = node.get_mut(key.as_str())?;
    }
    match node {
        Value::Mapping(map) => map.remove(leaf.as_str()).map(|_| Some(leaf)),
        _ => None,
    }
}
