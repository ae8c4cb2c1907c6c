//! The `[home]` configuration: timers, wording, event log, MQTT, webhook, button, secrets.
//!
//! Input: the `[home]` table of the config file (serde; unknown keys are refused); the
//! credentials it names are read by [`HomeSecrets::load`] (in `secrets.rs`).
//! Output: a [`HomeConfig`] whose [`HomeConfig::validate`] says what is wrong before anything
//! starts, and [`HomeSecrets`] whose values never appear in `Debug` output, logs or errors.
//! Failures are [`ConfigError`]s that name the key (never a secret's value).

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use super::secrets::{HomeSecrets, Secret};

/// Longest a mute may last; a longer request is cut to this (a monitor must not be silenced
/// for good by one command).
pub const MAX_MUTE_SECONDS: f64 = 24.0 * 3600.0;
/// Longest any timer may be set to (a week).
pub const MAX_TIMER_SECONDS: f64 = 7.0 * 24.0 * 3600.0;
/// Largest secret file read (a password or token is far smaller).
pub const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;
/// Seconds in a day.
pub const SECONDS_PER_DAY: f64 = 86_400.0;

/// What is wrong with `[home]` or its secrets; it names the key, never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of range or malformed.
    #[error("home.{key}: {message}")]
    Invalid {
        /// The key under `[home]` (e.g. `fall.ack_seconds`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The environment variable named for a secret is unset or empty.
    #[error("{what}: environment variable {var} is not set or is empty")]
    SecretEnv {
        /// Which secret ("home.mqtt password", "home.webhook token").
        what: &'static str,
        /// The variable's name.
        var: String,
    },
    /// The file named for a secret cannot be read.
    #[error("{what}: cannot read the secret file {path}")]
    SecretFile {
        /// Which secret.
        what: &'static str,
        /// The secret file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The secret file is empty (after its trailing newline) or over [`MAX_SECRET_FILE_BYTES`].
    #[error("{what}: the secret file {path} is empty or too large")]
    SecretFileSize {
        /// Which secret.
        what: &'static str,
        /// The secret file.
        path: PathBuf,
    },
    /// Both an environment variable and a file are given for one secret.
    #[error("{what}: give either an environment variable or a file, not both")]
    SecretTwice {
        /// Which secret.
        what: &'static str,
    },
    /// A TLS file (`mqtt.ca_file`, `mqtt.client_cert_file`, `mqtt.client_key_file`,
    /// `webhook.ca_file`) cannot be read.
    #[error("home.{key}: cannot read {path}")]
    TlsFileRead {
        /// The key under `[home]` that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file holds no usable PEM certificate or key (or a broken one).
    #[error("home.{key}: {path}: {message}")]
    TlsFileInvalid {
        /// The key under `[home]` that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// `[home]`: everything the home fall-and-hazard monitor needs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeConfig {
    /// This device's id: MQTT client id, Home Assistant object ids, event ids. Letters, digits,
    /// `-` and `_` only.
    pub node_id: String,
    /// The device's name as Home Assistant shows it.
    pub name: String,
    /// The prompt label whose smoothed score means "a person lying on the floor"; events carry it.
    pub fall_label: String,
    /// Where the event log and the outboxes live (created 0700; files 0600).
    pub state_dir: PathBuf,
    /// Seconds between two `stats` messages.
    pub stats_interval_seconds: f64,
    /// Whether the pipeline may keep snapshots of incidents. Off by default; this module never
    /// stores or sends an image either way.
    pub snapshots: bool,
    /// `[home.fall]`: the fall state machine's timers.
    pub fall: FallConfig,
    /// The daily "not seen up by" check; absent: off.
    pub inactivity: Option<InactivityConfig>,
    /// `[home.speech]`: what the device says at each step.
    pub speech: SpeechConfig,
    /// `[home.event_log]`: the event log file and its rotation.
    pub event_log: EventLogConfig,
    /// The MQTT channel; absent: off.
    pub mqtt: Option<MqttConfig>,
    /// The webhook channel; absent: off.
    pub webhook: Option<WebhookConfig>,
    /// A Linux input device whose keys mean "I am all right"; absent: off.
    pub button: Option<ButtonConfig>,
}

impl Default for HomeConfig {
    fn default() -> Self {
        HomeConfig {
            node_id: "clipsight".into(),
            name: "clipsight home monitor".into(),
            fall_label: "person lying on the floor".into(),
            state_dir: PathBuf::from("/var/lib/clipsight/home"),
            stats_interval_seconds: 60.0,
            snapshots: false,
            fall: FallConfig::default(),
            inactivity: None,
            speech: SpeechConfig::default(),
            event_log: EventLogConfig::default(),
            mqtt: None,
            webhook: None,
            button: None,
        }
    }
}

/// Written by hand so that a webhook address (which may carry a token) is not printed.
impl fmt::Debug for HomeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HomeConfig")
            .field("node_id", &self.node_id)
            .field("name", &self.name)
            .field("fall_label", &self.fall_label)
            .field("state_dir", &self.state_dir)
            .field("stats_interval_seconds", &self.stats_interval_seconds)
            .field("snapshots", &self.snapshots)
            .field("fall", &self.fall)
            .field("inactivity", &self.inactivity)
            .field("speech", &self.speech)
            .field("event_log", &self.event_log)
            .field("mqtt", &self.mqtt)
            .field("webhook", &self.webhook)
            .field("button", &self.button)
            .finish()
    }
}

/// `[home.fall]`: the fall state machine's timers (seconds on the monotonic clock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FallConfig {
    /// T1: seconds of "lying" evidence before the spoken check-in.
    pub lying_seconds: f64,
    /// T2: seconds the check-in waits for a cancel before the alert is raised.
    pub checkin_seconds: f64,
    /// T3: seconds a person must be seen up (and not lying) to end a check-in or resolve an alert.
    pub recovery_seconds: f64,
    /// T4: seconds an alert may stay unacknowledged before it escalates to the second contact.
    pub ack_seconds: f64,
    /// After "I am all right", no new check-in until the person has been up for T3, or until
    /// this many seconds have passed while they still lie there.
    pub recheck_after_cancel_seconds: f64,
    /// Consecutive seconds of frames too dark to judge before a "can't see" event.
    pub cant_see_seconds: f64,
    /// A gap between two observations longer than this counts only this much as evidence
    /// (a stalled pipeline must not make a few frames look like a long fall).
    pub max_observation_gap_seconds: f64,
    /// How long `mute` lasts when the command names no duration (at most a day).
    pub mute_default_seconds: f64,
    /// Whether an unacknowledged alert is sent again.
    pub realert: RealertPolicy,
}

impl Default for FallConfig {
    fn default() -> Self {
        FallConfig {
            lying_seconds: 10.0,
            checkin_seconds: 30.0,
            recovery_seconds: 20.0,
            ack_seconds: 300.0,
            recheck_after_cancel_seconds: 300.0,
            cant_see_seconds: 5.0,
            max_observation_gap_seconds: 2.0,
            mute_default_seconds: 3600.0,
            realert: RealertPolicy::Once {},
        }
    }
}

/// What happens to an alert that nobody acknowledges. Either way one incident is one alert
/// id: a reminder is an `update` of the same alert, never a new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case", deny_unknown_fields)]
pub enum RealertPolicy {
    /// One alert message per incident, then only its updates (escalation, acknowledgement, end).
    /// (An empty struct variant, so that stray keys next to `policy = "once"` are refused.)
    Once {},
    /// Send a reminder update every `every_seconds` until acknowledged or resolved, at most
    /// `max_repeats` times.
    Repeat {
        /// Seconds between reminders.
        every_seconds: f64,
        /// The most reminders per incident.
        max_repeats: u32,
    },
}

/// `[home.inactivity]`: alert when nobody was seen up between `window_start` and `seen_up_by`
/// (local time, "HH:MM").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InactivityConfig {
    /// When the window opens; being up before it does not count ("06:00").
    pub window_start: String,
    /// The deadline: not seen up by then raises an inactivity alert ("10:00").
    pub seen_up_by: String,
}

impl InactivityConfig {
    /// The window as seconds since local midnight: (start, deadline).
    pub fn window(&self) -> Result<(f64, f64), ConfigError> {
        let start = parse_hh_mm(&self.window_start)
            .ok_or_else(|| invalid("inactivity.window_start", "expected \"HH:MM\""))?;
        let by = parse_hh_mm(&self.seen_up_by)
            .ok_or_else(|| invalid("inactivity.seen_up_by", "expected \"HH:MM\""))?;
        if by <= start {
            return Err(invalid(
                "inactivity.seen_up_by",
                "must be later than window_start on the same day",
            ));
        }
        Ok((start, by))
    }
}

/// "HH:MM" (24-hour) → seconds since midnight.
pub fn parse_hh_mm(s: &str) -> Option<f64> {
    let (h, m) = s.trim().split_once(':')?;
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (h < 24 && m < 60).then(|| f64::from(h * 3600 + m * 60))
}

/// `[home.speech]`: what the device says. An empty string says nothing at that step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeechConfig {
    /// Spoken when a fall is suspected (after T1).
    pub checkin: String,
    /// Spoken when the check-in is cancelled.
    pub cancelled: String,
    /// Spoken when the alert is raised (after T2).
    pub alert_raised: String,
    /// Spoken when a caregiver acknowledges.
    pub acknowledged: String,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        SpeechConfig {
            checkin: "Are you all right? Press the button if you are.".into(),
            cancelled: "All right. I will not call anyone.".into(),
            alert_raised: "I have sent an alert to your carer.".into(),
            acknowledged: "Your carer has seen the alert.".into(),
        }
    }
}

/// `[home.event_log]`: the JSON-lines event log in `state_dir`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventLogConfig {
    /// File name inside `state_dir`.
    pub file: String,
    /// Rotate when the file would grow past this many bytes.
    pub max_bytes: u64,
    /// Rotated files kept (`events.jsonl.1` is the newest).
    pub keep: u32,
}

impl Default for EventLogConfig {
    fn default() -> Self {
        EventLogConfig {
            file: "events.jsonl".into(),
            max_bytes: 4 * 1024 * 1024,
            keep: 5,
        }
    }
}

/// `[home.mqtt]`: the MQTT broker (Home Assistant's, usually mosquitto).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// The broker's host name or address (default `localhost`).
    pub host: String,
    /// The broker's TCP port (default 1883).
    pub port: u16,
    /// Topics are `<topic_prefix>/available`, `/events`, `/alerts`, `/stats`, `/state`, `/set`.
    pub topic_prefix: String,
    /// Client id; default: the node id. Two clients with one id push each other off the broker.
    pub client_id: Option<String>,
    /// User name for the broker; required when a password is given.
    pub username: Option<String>,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored); keep it 0600.
    pub password_file: Option<PathBuf>,
    /// Publish Home Assistant MQTT discovery configs (retained).
    pub discovery: bool,
    /// Home Assistant's discovery topic prefix (default `homeassistant`).
    pub discovery_prefix: String,
    /// MQTT keep-alive interval, in seconds (at least 5; default 30).
    pub keep_alive_seconds: u64,
    /// Waits between reconnection attempts grow from this ...
    pub reconnect_min_seconds: f64,
    /// ... to this.
    pub reconnect_max_seconds: f64,
    /// Connect over TLS (default false; the broker's TLS listener is usually port 8883).
    /// The broker's certificate is always checked: it must be signed by a trusted CA and name
    /// `host` (a DNS name or an IP address in its subjectAltName).
    pub tls: bool,
    /// PEM file of the CA certificate(s) that signed the broker's certificate. When given,
    /// only these CAs are trusted (the built-in roots are not); when absent (with `tls = true`),
    /// the Mozilla roots built into clipsight (webpki-roots) are. Only with `tls = true`.
    pub ca_file: Option<PathBuf>,
    /// PEM file of this device's client certificate (chain), for brokers that require one
    /// (`require_certificate true` in mosquitto). Give `client_key_file` with it.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1); keep it
    /// 0600. Give `client_cert_file` with it.
    pub client_key_file: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "localhost".into(),
            port: 1883,
            topic_prefix: "clipsight".into(),
            client_id: None,
            username: None,
            password_env: None,
            password_file: None,
            discovery: true,
            discovery_prefix: "homeassistant".into(),
            keep_alive_seconds: 30,
            reconnect_min_seconds: 1.0,
            reconnect_max_seconds: 60.0,
            tls: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

/// `[home.webhook]`: HTTP(S) POSTs of alerts (and optionally events) and a heartbeat.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// The first contact's endpoint (`https://` or `http://`).
    pub url: String,
    /// The second contact's endpoint: gets an alert once it escalates, and its later updates.
    pub escalation_url: Option<String>,
    /// Name of the environment variable holding a bearer token (`Authorization: Bearer …`).
    pub token_env: Option<String>,
    /// File holding the bearer token; keep it 0600.
    pub token_file: Option<PathBuf>,
    /// Also POST every event (check-ins, can't-see, mute), not only alerts.
    pub events: bool,
    /// Seconds between heartbeat POSTs; 0: none.
    pub heartbeat_seconds: f64,
    /// Whole-request timeout.
    pub timeout_seconds: f64,
    /// Waits between retries grow from this ...
    pub retry_min_seconds: f64,
    /// ... to this.
    pub retry_max_seconds: f64,
    /// PEM file of the CA certificate(s) that signed the web server's certificate (a private
    /// CA, or a self-signed server). When given, only these CAs are trusted for `url` and
    /// `escalation_url`, instead of the built-in Mozilla roots; certificate checks stay on
    /// either way. Only for `https://` addresses.
    pub ca_file: Option<PathBuf>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            escalation_url: None,
            token_env: None,
            token_file: None,
            events: false,
            heartbeat_seconds: 300.0,
            timeout_seconds: 10.0,
            retry_min_seconds: 2.0,
            retry_max_seconds: 300.0,
            ca_file: None,
        }
    }
}

/// Written by hand: a webhook address often carries a token in its path or query, so only the
/// scheme and host are shown.
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field(
                "escalation_url",
                &self.escalation_url.as_deref().map(redact_url),
            )
            .field("token_env", &self.token_env)
            .field("token_file", &self.token_file)
            .field("events", &self.events)
            .field("heartbeat_seconds", &self.heartbeat_seconds)
            .field("timeout_seconds", &self.timeout_seconds)
            .field("retry_min_seconds", &self.retry_min_seconds)
            .field("retry_max_seconds", &self.retry_max_seconds)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `scheme://host[:port]/…` with any user info, path and query cut: safe to log.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => return "<invalid url>".into(),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}/…")
}

/// `[home.button]`: a Linux input device (evdev) whose key presses mean "I am all right".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonConfig {
    /// The event device, best by a stable name: `/dev/input/by-id/…-event-kbd`.
    pub device: PathBuf,
    /// Linux key codes (`linux/input-event-codes.h`) that cancel: e.g. 28 KEY_ENTER,
    /// 57 KEY_SPACE, 256 BTN_0, 164 KEY_PLAYPAUSE.
    pub keys: Vec<u16>,
}

fn check_seconds(key: &str, v: f64, allow_zero: bool) -> Result<(), ConfigError> {
    let ok = v.is_finite() && v <= MAX_TIMER_SECONDS && (v > 0.0 || (allow_zero && v == 0.0));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!(
                "must be {} and at most {MAX_TIMER_SECONDS} s",
                if allow_zero { "0 or more" } else { "above 0" }
            ),
        ))
    }
}

fn check_name(key: &str, v: &str) -> Result<(), ConfigError> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            "use 1 to 64 letters, digits, '-' or '_' (it becomes part of topics and ids)",
        ))
    }
}

fn check_topic(key: &str, v: &str) -> Result<(), ConfigError> {
    let ok =
        !v.is_empty() && !v.starts_with('/') && !v.ends_with('/') && !v.contains(['+', '#', '\0']);
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            "must be a topic without wildcards, not starting or ending with '/'",
        ))
    }
}

fn check_url(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.starts_with("https://") || v.starts_with("http://") {
        Ok(())
    } else {
        Err(invalid(key, "must start with https:// or http://"))
    }
}

impl HomeConfig {
    /// Checks every value; the first problem is returned, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name("node_id", &self.node_id)?;
        if self.fall_label.trim().is_empty() {
            return Err(invalid("fall_label", "must not be empty"));
        }
        check_seconds("stats_interval_seconds", self.stats_interval_seconds, false)?;
        let f = &self.fall;
        check_seconds("fall.lying_seconds", f.lying_seconds, true)?;
        check_seconds("fall.checkin_seconds", f.checkin_seconds, true)?;
        check_seconds("fall.recovery_seconds", f.recovery_seconds, true)?;
        check_seconds("fall.ack_seconds", f.ack_seconds, false)?;
        check_seconds(
            "fall.recheck_after_cancel_seconds",
            f.recheck_after_cancel_seconds,
            false,
        )?;
        check_seconds("fall.cant_see_seconds", f.cant_see_seconds, true)?;
        check_seconds(
            "fall.max_observation_gap_seconds",
            f.max_observation_gap_seconds,
            false,
        )?;
        check_seconds("fall.mute_default_seconds", f.mute_default_seconds, false)?;
        if f.mute_default_seconds > MAX_MUTE_SECONDS {
            return Err(invalid(
                "fall.mute_default_seconds",
                format!("at most {MAX_MUTE_SECONDS} s"),
            ));
        }
        if let RealertPolicy::Repeat { every_seconds, .. } = f.realert {
            check_seconds("fall.realert.every_seconds", every_seconds, false)?;
        }
        if let Some(i) = &self.inactivity {
            i.window()?;
        }
        let log = &self.event_log;
        if log.file.is_empty() || log.file.contains('/') {
            return Err(invalid("event_log.file", "must be a plain file name"));
        }
        if log.max_bytes < 4096 {
            return Err(invalid("event_log.max_bytes", "must be at least 4096"));
        }
        if let Some(m) = &self.mqtt {
            if m.host.trim().is_empty() {
                return Err(invalid("mqtt.host", "must not be empty"));
            }
            check_topic("mqtt.topic_prefix", &m.topic_prefix)?;
            check_topic("mqtt.discovery_prefix", &m.discovery_prefix)?;
            if let Some(id) = &m.client_id {
                check_name("mqtt.client_id", id)?;
            }
            if m.keep_alive_seconds < 5 {
                return Err(invalid("mqtt.keep_alive_seconds", "must be at least 5"));
            }
            check_seconds("mqtt.reconnect_min_seconds", m.reconnect_min_seconds, false)?;
            check_seconds("mqtt.reconnect_max_seconds", m.reconnect_max_seconds, false)?;
            if m.reconnect_max_seconds < m.reconnect_min_seconds {
                return Err(invalid(
                    "mqtt.reconnect_max_seconds",
                    "must not be below reconnect_min_seconds",
                ));
            }
            if !m.tls {
                let files = [
                    ("mqtt.ca_file", &m.ca_file),
                    ("mqtt.client_cert_file", &m.client_cert_file),
                    ("mqtt.client_key_file", &m.client_key_file),
                ];
                if let Some((key, _)) = files.iter().find(|(_, f)| f.is_some()) {
                    return Err(invalid(key, "is used only with tls = true; set mqtt.tls"));
                }
            }
            match (&m.client_cert_file, &m.client_key_file) {
                (Some(_), None) => {
                    return Err(invalid(
                        "mqtt.client_key_file",
                        "a client_cert_file needs its client_key_file",
                    ))
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "mqtt.client_cert_file",
                        "a client_key_file needs its client_cert_file",
                    ))
                }
                _ => {}
            }
            if m.password_env.is_some() || m.password_file.is_some() {
                if m.username.is_none() {
                    return Err(invalid("mqtt.username", "a password needs a username"));
                }
                if m.password_env.is_some() && m.password_file.is_some() {
                    return Err(ConfigError::SecretTwice {
                        what: "home.mqtt password",
                    });
                }
            }
        }
        if let Some(w) = &self.webhook {
            check_url("webhook.url", &w.url)?;
            if let Some(u) = &w.escalation_url {
                check_url("webhook.escalation_url", u)?;
            }
            if w.ca_file.is_some() {
                let urls = std::iter::once(&w.url).chain(&w.escalation_url);
                if urls.into_iter().any(|u| !u.starts_with("https://")) {
                    return Err(invalid(
                        "webhook.ca_file",
                        "a CA applies to https:// addresses only; url and escalation_url \
                         must both be https://",
                    ));
                }
            }
            if w.token_env.is_some() && w.token_file.is_some() {
                return Err(ConfigError::SecretTwice {
                    what: "home.webhook token",
                });
            }
            check_seconds("webhook.heartbeat_seconds", w.heartbeat_seconds, true)?;
            check_seconds("webhook.timeout_seconds", w.timeout_seconds, false)?;
            check_seconds("webhook.retry_min_seconds", w.retry_min_seconds, false)?;
            check_seconds("webhook.retry_max_seconds", w.retry_max_seconds, false)?;
            if w.retry_max_seconds < w.retry_min_seconds {
                return Err(invalid(
                    "webhook.retry_max_seconds",
                    "must not be below retry_min_seconds",
                ));
            }
        }
        if let Some(b) = &self.button {
            if b.keys.is_empty() {
                return Err(invalid("button.keys", "name at least one key code"));
            }
        }
        Ok(())
    }

    /// The MQTT topic prefix, when MQTT is on.
    pub fn topic_prefix(&self) -> Option<&str> {
        self.mqtt.as_ref().map(|m| m.topic_prefix.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<HomeConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = HomeConfig::default();
        c.validate().unwrap();
        assert_eq!(c.fall.lying_seconds, 10.0);
        assert_eq!(c.fall.checkin_seconds, 30.0);
        assert_eq!(c.fall.recovery_seconds, 20.0);
        assert_eq!(c.fall.ack_seconds, 300.0);
        assert!(!c.snapshots);
    }

    #[test]
    fn full_example_parses() {
        let c = parse(
            r#"
            node_id = "flat-3"
            state_dir = "/tmp/x"
            [fall]
            lying_seconds = 8
            realert = { policy = "repeat", every_seconds = 600, max_repeats = 3 }
            [inactivity]
            window_start = "06:00"
            seen_up_by = "10:30"
            [mqtt]
            host = "ha.local"
            username = "clipsight"
            password_env = "CLIPSIGHT_MQTT_PASSWORD"
            [webhook]
            url = "https://example.org/hook/abc"
            token_file = "/etc/clipsight/token"
            [button]
            device = "/dev/input/event0"
            keys = [28, 57]
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.fall.realert,
            RealertPolicy::Repeat {
                every_seconds: 600.0,
                max_repeats: 3
            }
        );
        assert_eq!(
            c.inactivity.unwrap().window().unwrap(),
            (6.0 * 3600.0, 10.5 * 3600.0)
        );
    }

    #[test]
    fn the_example_in_docs_home_md_is_valid() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            home: HomeConfig,
        }
        let doc = include_str!("../../docs/home.md");
        let start = doc.find("```toml\n[home]").expect("a [home] example") + "```toml\n".len();
        let len = doc[start..].find("```").unwrap();
        let file: File = toml::from_str(&doc[start..start + len]).unwrap();
        file.home.validate().unwrap();
        assert_eq!(file.home.node_id, "flat-3");
        assert!(file.home.mqtt.is_some() && file.home.webhook.is_some());
        assert!(file.home.inactivity.is_some() && file.home.button.is_some());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse("nodeid = \"x\"").is_err());
        assert!(parse("[fall]\nlying = 3").is_err());
        assert!(parse("[fall]\nrealert = { policy = \"once\", every_seconds = 3 }").is_err());
        assert_eq!(
            parse("[fall]\nrealert = { policy = \"once\" }")
                .unwrap()
                .fall
                .realert,
            RealertPolicy::Once {}
        );
        assert!(parse("[mqtt]\npassword = \"hunter2\"").is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = HomeConfig::default();
        c.fall.ack_seconds = 0.0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("fall.ack_seconds"), "{e}");
        let c = HomeConfig {
            node_id: "a b".into(),
            ..HomeConfig::default()
        };
        assert!(c.validate().is_err());
        let c = HomeConfig {
            inactivity: Some(InactivityConfig {
                window_start: "10:00".into(),
                seen_up_by: "09:00".into(),
            }),
            ..HomeConfig::default()
        };
        assert!(c.validate().is_err());
        assert_eq!(parse_hh_mm("24:00"), None);
        assert_eq!(parse_hh_mm("7:05"), Some(25500.0));
    }

    #[test]
    fn tls_keys_parse_and_are_checked() {
        let c = parse(
            r#"
            [mqtt]
            host = "ha.local"
            port = 8883
            tls = true
            ca_file = "/etc/clipsight/ha-ca.pem"
            client_cert_file = "/etc/clipsight/client.pem"
            client_key_file = "/etc/clipsight/client.key"
            [webhook]
            url = "https://ha.local:8123/api/webhook/x"
            ca_file = "/etc/clipsight/ha-ca.pem"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        let m = c.mqtt.as_ref().unwrap();
        assert!(m.tls);
        assert_eq!(
            m.ca_file.as_deref(),
            Some(Path::new("/etc/clipsight/ha-ca.pem"))
        );
        assert!(!MqttConfig::default().tls, "TLS is off by default");
        let err = |text: &str| parse(text).unwrap().validate().unwrap_err().to_string();
        // A CA or client certificate without tls = true would silently send in clear.
        let e = err("[mqtt]\nca_file = \"/ca.pem\"");
        assert!(
            e.contains("mqtt.ca_file") && e.contains("tls = true"),
            "{e}"
        );
        let e = err("[mqtt]\ntls = true\nclient_cert_file = \"/c.pem\"");
        assert!(e.contains("mqtt.client_key_file"), "{e}");
        let e = err("[mqtt]\ntls = true\nclient_key_file = \"/c.key\"");
        assert!(e.contains("mqtt.client_cert_file"), "{e}");
        let e = err("[webhook]\nurl = \"http://h/x\"\nca_file = \"/ca.pem\"");
        assert!(e.contains("webhook.ca_file"), "{e}");
        assert!(parse("[mqtt]\ntls = \"yes\"").is_err());
        assert!(parse("[mqtt]\ncafile = \"/ca.pem\"").is_err());
    }

    #[test]
    fn secrets_come_from_env_or_file_and_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "tok-123\n").unwrap();
        let c = HomeConfig {
            mqtt: Some(MqttConfig {
                username: Some("u".into()),
                password_env: Some("PW_VAR".into()),
                ..MqttConfig::default()
            }),
            webhook: Some(WebhookConfig {
                url: "https://user:pw@example.org/hook/SECRETPATH?k=v".into(),
                token_file: Some(file),
                ..WebhookConfig::default()
            }),
            ..HomeConfig::default()
        };
        c.validate().unwrap();
        let s = HomeSecrets::load_with(&c, |v| (v == "PW_VAR").then(|| "pw-456".into())).unwrap();
        assert_eq!(s.mqtt_password.as_ref().unwrap().expose(), "pw-456");
        assert_eq!(s.webhook_token.as_ref().unwrap().expose(), "tok-123");
        let shown = format!("{s:?} {c:?}");
        for secret in ["pw-456", "tok-123", "SECRETPATH", "user:pw"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("example.org"));
        let e = HomeSecrets::load_with(&c, |_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("PW_VAR"), "{e}");
    }
}
