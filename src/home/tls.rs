//! TLS material for the caregiver channels: the CAs each channel trusts, and MQTT's client
//! certificate.
//!
//! Inputs: the PEM files named by `home.mqtt.ca_file`, `home.mqtt.client_cert_file`,
//! `home.mqtt.client_key_file` and `home.webhook.ca_file`, read once when the monitor starts.
//! Outputs: a rustls [`ClientConfig`] for MQTT over TLS (ring, the provider ureq already uses;
//! the server's certificate is always verified), and the root certificates for the webhook's
//! ureq agent. A `ca_file` replaces the built-in Mozilla roots (webpki-roots) for its channel;
//! without one, MQTT over TLS trusts those roots, as the webhook does.
//! Failures: a file that cannot be read, or holds no usable PEM certificate or key, is a
//! [`ConfigError`] naming the key and the file, before any channel starts.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

use crate::home::config::{ConfigError, MqttConfig, WebhookConfig};

/// Largest PEM file read (a CA bundle is far smaller).
const MAX_PEM_BYTES: u64 = 1024 * 1024;

fn read_pem(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let io = |source| ConfigError::TlsFileRead {
        key,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(bad(key, path, format!("over {MAX_PEM_BYTES} bytes")));
    }
    std::fs::read(path).map_err(io)
}

fn bad(key: &'static str, path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::TlsFileInvalid {
        key,
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Warns when a private key file can be read by other users (as for secret files).
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                log::warn!(
                    "home.mqtt.client_key_file: {} can be read by other users; chmod 600 it",
                    path.display()
                );
            }
        }
    }
}

/// The certificates of a PEM file: at least one, each a valid X.509 certificate.
fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read_pem(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(key, path, format!("not a valid PEM file: {e}")))?;
    if certs.is_empty() {
        return Err(bad(
            key,
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The CAs of a PEM file as a root store; every certificate in it must be usable as one.
fn read_roots(
    key: &'static str,
    path: &Path,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), ConfigError> {
    let certs = read_certs(key, path)?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| {
            bad(
                key,
                path,
                format!("certificate {} is not a usable CA certificate: {e}", i + 1),
            )
        })?;
    }
    Ok((roots, certs))
}

/// The rustls client config for `[home.mqtt]` with `tls = true`; `None` when TLS is off.
pub(crate) fn mqtt_client_config(
    cfg: &MqttConfig,
) -> Result<Option<Arc<ClientConfig>>, ConfigError> {
    if !cfg.tls {
        return Ok(None);
    }
    let roots = match &cfg.ca_file {
        Some(path) => read_roots("mqtt.ca_file", path)?.0,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Invalid {
            key: "mqtt.tls".into(),
            message: format!("no TLS version available: {e}"),
        })?
        .with_root_certificates(roots);
    let config = match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert_path), Some(key_path)) => {
            let chain = read_certs("mqtt.client_cert_file", cert_path)?;
            let pem = read_pem("mqtt.client_key_file", key_path)?;
            warn_if_shared(key_path);
            // The parser's error is not quoted: it may echo a line of the key file.
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
                bad(
                    "mqtt.client_key_file",
                    key_path,
                    "holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1)",
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                bad(
                    "mqtt.client_key_file",
                    key_path,
                    format!("does not go with client_cert_file: {e}"),
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// The CAs the webhook trusts instead of the built-in roots; `None`: the built-in roots.
pub(crate) fn webhook_roots(
    cfg: &WebhookConfig,
) -> Result<Option<Vec<ureq::tls::Certificate<'static>>>, ConfigError> {
    let Some(path) = &cfg.ca_file else {
        return Ok(None);
    };
    let (_, certs) = read_roots("webhook.ca_file", path)?;
    Ok(Some(
        certs
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mqtt_with_ca(path: &Path) -> MqttConfig {
        MqttConfig {
            tls: true,
            ca_file: Some(path.to_path_buf()),
            ..MqttConfig::default()
        }
    }

    #[test]
    fn tls_off_builds_nothing_and_tls_on_without_ca_uses_builtin_roots() {
        assert!(mqtt_client_config(&MqttConfig::default())
            .unwrap()
            .is_none());
        let on = MqttConfig {
            tls: true,
            ..MqttConfig::default()
        };
        assert!(mqtt_client_config(&on).unwrap().is_some());
        assert!(webhook_roots(&WebhookConfig::default()).unwrap().is_none());
    }

    #[test]
    fn unreadable_or_unparsable_ca_file_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let e = mqtt_client_config(&mqtt_with_ca(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("home.mqtt.ca_file") && e.contains("missing-ca.pem"),
            "{e}"
        );
        assert!(e.contains("cannot read"), "{e}");

        let garbage = dir.path().join("garbage-ca.pem");
        std::fs::write(&garbage, "this is not a certificate\n").unwrap();
        let e = mqtt_client_config(&mqtt_with_ca(&garbage))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("home.mqtt.ca_file") && e.contains("garbage-ca.pem"),
            "{e}"
        );
        assert!(e.contains("no PEM certificate"), "{e}");

        // A PEM block whose contents are no certificate.
        let broken = dir.path().join("broken-ca.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = mqtt_client_config(&mqtt_with_ca(&broken))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("home.mqtt.ca_file") && e.contains("broken-ca.pem"),
            "{e}"
        );

        // The client certificate and key are named the same way.
        let client = MqttConfig {
            tls: true,
            client_cert_file: Some(garbage.clone()),
            client_key_file: Some(missing.clone()),
            ..MqttConfig::default()
        };
        let e = mqtt_client_config(&client).unwrap_err().to_string();
        assert!(e.contains("home.mqtt.client_cert_file"), "{e}");

        let w = WebhookConfig {
            url: "https://example.org/hook".into(),
            ca_file: Some(garbage),
            ..WebhookConfig::default()
        };
        let e = webhook_roots(&w).unwrap_err().to_string();
        assert!(
            e.contains("home.webhook.ca_file") && e.contains("garbage-ca.pem"),
            "{e}"
        );
    }
}
