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
pub fn read_yaml<T: DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
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

/// Parses YAML text into `T`, with errors that name the file and the field path.
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // The YAML error repeats the path it failed in ("a.b: unknown field ..."); say it once.
        let message = match message.split_once(": ") {
            Some((prefix, rest)) if path.starts_with(prefix) => rest.to_owned(),
            _ => message,
        };
        ConfigError::new(file, path, message)
    })
}
