//! The error of one file: which file, and what went wrong with it. Every error enum that
//! reads or writes files wraps this one, so a file is named the same way everywhere:
//! `PATH: cannot read`, `PATH: KEY: what is wrong (line N)`.

use std::path::{Path, PathBuf};

/// A file that cannot be read or written, or whose contents are invalid.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file cannot be opened, read or written.
    #[error("{path}: cannot {action}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was tried: "read" or "write".
        action: &'static str,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl FileError {
    /// A `map_err` adapter for reading `path`.
    pub fn reading(path: &Path) -> impl Fn(std::io::Error) -> FileError + '_ {
        move |source| FileError::Io {
            path: path.to_path_buf(),
            action: "read",
            source,
        }
    }

    /// A `map_err` adapter for writing `path`.
    pub fn writing(path: &Path) -> impl Fn(std::io::Error) -> FileError + '_ {
        move |source| FileError::Io {
            path: path.to_path_buf(),
            action: "write",
            source,
        }
    }

    /// `path`'s contents are invalid: `message` names the key.
    pub fn invalid(path: &Path, message: impl Into<String>) -> FileError {
        FileError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Reads a whole file as UTF-8 text.
pub fn read_to_string(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(FileError::reading(path))
}

/// Parses `text`, the contents of `path`, as TOML; an error names the key and the line.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, FileError> {
    toml::from_str(text).map_err(|e| FileError::invalid(path, crate::toml_error::explain(text, &e)))
}
