//! Credentials for the home channels: the MQTT password and the webhook token, read from the
//! environment variables or files that `[home]` names. A [`Secret`] never appears in `Debug`
//! output, logs or errors; a file that other users can read is refused.

use std::fmt;
use std::path::Path;

use super::config::{ConfigError, HomeConfig, MAX_SECRET_FILE_BYTES};

/// A password or token. Its `Debug` prints `Secret(***)`; it has no `Display`, so it cannot
/// slip into a `format!` by accident. [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password or token.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The credentials the channels need, read once at startup by [`HomeSecrets::load`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HomeSecrets {
    /// The MQTT password, if `[home.mqtt]` names one.
    pub mqtt_password: Option<Secret>,
    /// The webhook bearer token, if `[home.webhook]` names one.
    pub webhook_token: Option<Secret>,
}

impl fmt::Debug for HomeSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HomeSecrets")
            .field("mqtt_password", &self.mqtt_password.as_ref().map(|_| "***"))
            .field("webhook_token", &self.webhook_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl HomeSecrets {
    /// Reads the secrets that `config` names from the environment or from files. Called by
    /// the binary at startup (the library's constructors read no environment themselves).
    pub fn load(config: &HomeConfig) -> Result<HomeSecrets, ConfigError> {
        Self::load_with(config, |var| std::env::var(var).ok())
    }

    /// [`HomeSecrets::load`] with the environment given as a function (for tests).
    pub fn load_with(
        config: &HomeConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<HomeSecrets, ConfigError> {
        let mut secrets = HomeSecrets::default();
        if let Some(m) = &config.mqtt {
            secrets.mqtt_password = read_secret(
                "home.mqtt password",
                m.password_env.as_deref(),
                m.password_file.as_deref(),
                &env,
            )?;
        }
        if let Some(w) = &config.webhook {
            secrets.webhook_token = read_secret(
                "home.webhook token",
                w.token_env.as_deref(),
                w.token_file.as_deref(),
                &env,
            )?;
        }
        Ok(secrets)
    }
}

fn read_secret(
    what: &'static str,
    var: Option<&str>,
    file: Option<&Path>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    match (var, file) {
        (Some(_), Some(_)) => Err(ConfigError::SecretTwice { what }),
        (Some(var), None) => match env(var) {
            Some(v) if !v.is_empty() => Ok(Some(Secret(v))),
            _ => Err(ConfigError::SecretEnv {
                what,
                var: var.to_string(),
            }),
        },
        (None, Some(path)) => {
            let io = |source| ConfigError::SecretFile {
                what,
                path: path.to_path_buf(),
                source,
            };
            let meta = std::fs::metadata(path).map_err(io)?;
            if meta.len() > MAX_SECRET_FILE_BYTES {
                return Err(ConfigError::SecretFileSize {
                    what,
                    path: path.to_path_buf(),
                });
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if meta.permissions().mode() & 0o077 != 0 {
                    log::warn!(
                        "{what}: {} can be read by other users; chmod 600 it",
                        path.display()
                    );
                }
            }
            let text = std::fs::read_to_string(path).map_err(io)?;
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            if value.is_empty() {
                return Err(ConfigError::SecretFileSize {
                    what,
                    path: path.to_path_buf(),
                });
            }
            Ok(Some(Secret(value)))
        }
        (None, None) => Ok(None),
    }
}
