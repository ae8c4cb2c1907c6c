//! The MQTT caregiver channel (Home Assistant, Frigate-style topics), on its own thread.
//!
//! Inputs: the disk [`Outbox`] of `events`/`alerts` records, live messages (`state`, `stats`)
//! from the monitor, and the broker. Outputs: QoS 1 publishes of the outbox records, each
//! removed from disk only after the broker's PUBACK (one in flight at a time, so the PUBACK
//! is unambiguous; alerts are rare); retained `available` (`online`, and `offline` by last
//! will or on a clean exit), retained Home Assistant discovery configs and `state`; and the
//! [`HomeCommand`]s that arrive on `<prefix>/set`, sent to the pipeline's command bus.
//! Failures: a lost broker is logged once per outage and retried with a growing wait while
//! records stay on disk; nothing here stops the monitor. With `tls = true` the connection is
//! TLS (the rustls config that `src/home/tls.rs` builds); a failed TLS handshake (a broker whose
//! certificate the trusted CAs do not vouch for, or a plain listener) is logged as such, once
//! per outage, and handled like any other outage: the records stay on disk. The password is
//! handed to the client and never logged (the client's `MqttOptions` is never formatted).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use rumqttc::{
    Client, Connection, ConnectionError, Event, LastWill, MqttOptions, Outgoing, Packet, QoS,
    TlsConfiguration, Transport,
};
use serde::Deserialize;
use serde_json::json;

use crate::home::config::{MqttConfig, Secret};
use crate::home::fall::CommandSource;
use crate::home::outbox::Outbox;
use crate::home::HomeCommand;
use crate::types::Command;

/// How long one poll of the connection waits while connected.
const POLL_CONNECTED: Duration = Duration::from_millis(100);
/// How long one poll waits while connecting (a TCP connect plus CONNACK must fit in it).
const POLL_CONNECTING: Duration = Duration::from_secs(3);
/// A record in flight this long without PUBACK is sent again.
const INFLIGHT_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests the client may queue for its event loop.
const REQUEST_CAPACITY: usize = 64;
/// Longest a clean exit waits to send `offline` and DISCONNECT.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// Largest `set` payload looked at.
const MAX_COMMAND_BYTES: usize = 1024;
/// Largest packet accepted from the broker.
const MAX_INCOMING_PACKET_BYTES: usize = 64 * 1024;
/// The `available` payload while the monitor is connected.
pub const ONLINE: &str = "online";
/// The `available` payload after a clean exit or, as the last will, a lost connection.
pub const OFFLINE: &str = "offline";

/// The topics under the prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `<prefix>/available`: retained `online`/`offline`.
    pub available: String,
    /// `<prefix>/events`: every event record.
    pub events: String,
    /// `<prefix>/alerts`: the records of incidents that reached the alert stage.
    pub alerts: String,
    /// `<prefix>/stats`: periodic counters.
    pub stats: String,
    /// `<prefix>/state`: the retained monitor state.
    pub state: String,
    /// `<prefix>/set`: commands in (acknowledge, cancel, mute, unmute).
    pub set: String,
}

impl Topics {
    /// The topics under `prefix`.
    pub fn new(prefix: &str) -> Topics {
        Topics {
            available: format!("{prefix}/available"),
            events: format!("{prefix}/events"),
            alerts: format!("{prefix}/alerts"),
            stats: format!("{prefix}/stats"),
            state: format!("{prefix}/state"),
            set: format!("{prefix}/set"),
        }
    }
}

/// Why a `set` payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The payload is over 1024 bytes (its length in bytes).
    #[error("the command is {0} bytes, over the limit of {MAX_COMMAND_BYTES}")]
    TooLong(usize),
    /// The payload is not UTF-8.
    #[error("the command is not UTF-8")]
    NotText,
    /// The command word is none of acknowledge, cancel, mute, unmute (or their short forms).
    #[error("unknown command {0:?} (acknowledge, cancel, mute, unmute)")]
    Unknown(String),
    /// A payload starting with `{` is not a valid JSON command.
    #[error("bad JSON command: {0}")]
    Json(String),
    /// The seconds after `mute` are not a finite number.
    #[error("bad mute duration {0:?} (seconds)")]
    Duration(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCommand {
    command: String,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    seconds: Option<f64>,
}

/// Parses a `set` payload: plain words (`acknowledge [name]`, `ack`, `cancel`, `ok`,
/// `mute [seconds]`, `unmute`) or JSON (`{"command": "acknowledge", "by": "Anna",
/// "id": "<alert id>"}`, `{"command": "mute", "seconds": 3600}`).
pub fn parse_command(payload: &[u8], source: CommandSource) -> Result<HomeCommand, CommandError> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(CommandError::TooLong(payload.len()));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|_| CommandError::NotText)?
        .trim();
    let (word, by, id, seconds) = if text.starts_with('{') {
        let c: JsonCommand =
            serde_json::from_str(text).map_err(|e| CommandError::Json(e.to_string()))?;
        (c.command.to_lowercase(), c.by, c.id, c.seconds)
    } else {
        let mut parts = text.splitn(2, char::is_whitespace);
        let word = parts.next().unwrap_or("").to_lowercase();
        let rest = parts.next().map(str::trim).filter(|s| !s.is_empty());
        match word.as_str() {
            "mute" => {
                let seconds = match rest {
                    Some(r) => Some(
                        r.parse::<f64>()
                            .ok()
                            .filter(|s| s.is_finite())
                            .ok_or_else(|| CommandError::Duration(r.to_string()))?,
                    ),
                    None => None,
                };
                (word, None, None, seconds)
            }
            _ => (word, rest.map(str::to_string), None, None),
        }
    };
    let by = by.map(|b| b.chars().take(64).collect::<String>());
    match word.as_str() {
        "acknowledge" | "ack" => Ok(HomeCommand::Acknowledge {
            source,
            by: by.unwrap_or_else(|| source.as_str().to_string()),
            id,
        }),
        "cancel" | "ok" => Ok(HomeCommand::Cancel { source }),
        "mute" => Ok(HomeCommand::Mute { source, seconds }),
        "unmute" => Ok(HomeCommand::Unmute { source }),
        other => Err(CommandError::Unknown(other.chars().take(32).collect())),
    }
}

/// The Home Assistant discovery configs: (topic, payload), all retained.
pub fn discovery_messages(
    cfg: &MqttConfig,
    node_id: &str,
    name: &str,
    topics: &Topics,
) -> Vec<(String, serde_json::Value)> {
    let device = json!({
        "identifiers": [format!("clipsight_{node_id}")],
        "name": name,
        "manufacturer": "clipsight",
        "model": "home fall monitor",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let base = |object: &str, entity_name: &str| {
        json!({
            "name": entity_name,
            "unique_id": format!("{node_id}_{object}"),
            "availability_topic": topics.available,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device,
        })
    };
    let mut out = Vec::new();
    let binary = [
        (
            "fall",
            "Fall",
            "safety",
            "{{ 'ON' if value_json.fall == 'alert' else 'OFF' }}",
        ),
        (
            "fall_check_in",
            "Fall check-in",
            "safety",
            "{{ 'ON' if value_json.fall == 'check_in' else 'OFF' }}",
        ),
        (
            "inactivity",
            "Not seen up",
            "safety",
            "{{ 'ON' if value_json.inactivity_alert else 'OFF' }}",
        ),
        (
            "escalated",
            "Alert escalated",
            "safety",
            "{{ 'ON' if value_json.escalated else 'OFF' }}",
        ),
        (
            "cant_see",
            "Can't see",
            "problem",
            "{{ 'ON' if value_json.cant_see else 'OFF' }}",
        ),
        (
            "muted",
            "Muted",
            "problem",
            "{{ 'ON' if value_json.muted else 'OFF' }}",
        ),
    ];
    for (object, entity_name, class, template) in binary {
        let mut v = base(object, entity_name);
        v["device_class"] = json!(class);
        v["state_topic"] = json!(topics.state);
        v["value_template"] = json!(template);
        v["json_attributes_topic"] = json!(topics.state);
        out.push((
            format!(
                "{}/binary_sensor/{node_id}/{object}/config",
                cfg.discovery_prefix
            ),
            v,
        ));
    }
    let buttons = [
        ("acknowledge", "Acknowledge alert", "acknowledge"),
        ("cancel", "All is well (cancel)", "cancel"),
        ("mute", "Mute", "mute"),
        ("unmute", "Unmute", "unmute"),
    ];
    for (object, entity_name, press) in buttons {
        let mut v = base(object, entity_name);
        v["command_topic"] = json!(topics.set);
        v["payload_press"] = json!(press);
        out.push((
            format!("{}/button/{node_id}/{object}/config", cfg.discovery_prefix),
            v,
        ));
    }
    out
}

/// What the monitor hands the MQTT thread.
#[derive(Debug)]
pub(crate) enum Job {
    /// Publish now if connected (QoS 0); a retained one is also re-sent on every reconnect.
    Live {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    },
    Shutdown,
}

/// Counters the thread shares, for stats.
#[derive(Debug, Default)]
pub struct MqttStatus {
    /// Whether the broker connection is up.
    pub connected: std::sync::atomic::AtomicBool,
    /// Outbox records the broker has acknowledged (PUBACK).
    pub delivered: std::sync::atomic::AtomicU64,
}

/// The running channel: a handle to its thread.
#[derive(Debug)]
pub(crate) struct MqttChannel {
    jobs: Sender<Job>,
    thread: Option<JoinHandle<()>>,
    done: Receiver<()>,
    pub(crate) status: Arc<MqttStatus>,
}

struct Worker {
    cfg: MqttConfig,
    topics: Topics,
    discovery: Vec<(String, serde_json::Value)>,
    outbox: Arc<Outbox>,
    commands: Sender<Command>,
    jobs: Receiver<Job>,
    status: Arc<MqttStatus>,
    retained: BTreeMap<String, Vec<u8>>,
}

struct Inflight {
    seq: u64,
    pkid: Option<u16>,
    sent: Instant,
}

impl MqttChannel {
    pub(crate) fn start(
        cfg: &MqttConfig,
        node_id: &str,
        name: &str,
        password: Option<Secret>,
        tls: Option<Arc<rustls::ClientConfig>>,
        outbox: Arc<Outbox>,
        commands: Sender<Command>,
    ) -> std::io::Result<MqttChannel> {
        let topics = Topics::new(&cfg.topic_prefix);
        let client_id = cfg.client_id.clone().unwrap_or_else(|| node_id.to_string());
        let mut opts = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
        opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_seconds))
            .set_clean_session(true)
            .set_max_packet_size(MAX_INCOMING_PACKET_BYTES, MAX_INCOMING_PACKET_BYTES)
            .set_last_will(LastWill::new(
                &topics.available,
                OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        if let Some(tls) = tls {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        }
        if let Some(user) = &cfg.username {
            let pw = password.as_ref().map(|s| s.expose()).unwrap_or("");
            opts.set_credentials(user.clone(), pw);
        }
        let discovery = if cfg.discovery {
            discovery_messages(cfg, node_id, name, &topics)
        } else {
            Vec::new()
        };
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let status = Arc::new(MqttStatus::default());
        let worker = Worker {
            cfg: cfg.clone(),
            topics,
            discovery,
            outbox,
            commands,
            jobs: jobs_rx,
            status: status.clone(),
            retained: BTreeMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("home-mqtt".into())
            .spawn(move || {
                worker.run(opts);
                let _ = done_tx.send(());
            })?;
        Ok(MqttChannel {
            jobs: jobs_tx,
            thread: Some(thread),
            done: done_rx,
            status,
        })
    }

    pub(crate) fn publish_live(&self, topic: String, payload: Vec<u8>, retain: bool) {
        let _ = self.jobs.send(Job::Live {
            topic,
            payload,
            retain,
        });
    }

    /// Publishes `offline`, disconnects and joins the thread (waits at most `timeout`).
    pub(crate) fn shutdown(&mut self, timeout: Duration) {
        let _ = self.jobs.send(Job::Shutdown);
        if let Some(thread) = self.thread.take() {
            if self.done.recv_timeout(timeout).is_ok() {
                let _ = thread.join();
            } else {
                log::warn!("home MQTT thread did not stop in time; leaving it");
            }
        }
    }
}

impl Drop for MqttChannel {
    fn drop(&mut self) {
        self.shutdown(SHUTDOWN_FLUSH * 2);
    }
}

enum Flow {
    Go,
    Stop,
}

impl Worker {
    fn run(mut self, opts: MqttOptions) {
        let (client, mut conn) = Client::new(opts, REQUEST_CAPACITY);
        let mut connected = false;
        let mut inflight: Option<Inflight> = None;
        let mut backoff = self.cfg.reconnect_min_seconds;
        let mut outage_reported = false;
        let endpoint = format!("{}:{}", self.cfg.host, self.cfg.port);
        loop {
            if let Flow::Stop = self.drain_jobs(&client, connected) {
                break;
            }
            if connected {
                self.send_next(&client, &mut inflight);
            }
            let wait = if connected {
                POLL_CONNECTED
            } else {
                POLL_CONNECTING
            };
            match conn.recv_timeout(wait) {
                Ok(Ok(event)) => match event {
                    Event::Incoming(Packet::ConnAck(_)) => {
                        connected = true;
                        self.status
                            .connected
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                        backoff = self.cfg.reconnect_min_seconds;
                        outage_reported = false;
                        log::info!("home MQTT: connected to {endpoint}");
                        self.on_connect(&client);
                    }
                    Event::Incoming(Packet::Publish(p)) if p.topic == self.topics.set => {
                        self.on_command(&p.payload, p.retain);
                    }
                    Event::Incoming(Packet::PubAck(ack)) => {
                        if let Some(f) = &inflight {
                            if f.pkid == Some(ack.pkid) {
                                match self.outbox.remove(f.seq) {
                                    Ok(()) => {
                                        self.status
                                            .delivered
                                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                    }
                                    Err(e) => log::error!("home MQTT: {e}"),
                                }
                                inflight = None;
                            }
                        }
                    }
                    Event::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 => {
                        if let Some(f) = &mut inflight {
                            if f.pkid.is_none() {
                                f.pkid = Some(pkid);
                            }
                        }
                    }
                    _ => {}
                },
                Ok(Err(e)) => {
                    connected = false;
                    self.status
                        .connected
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    inflight = None;
                    if outage_reported {
                        log::debug!("home MQTT: {endpoint} still unreachable: {e}");
                    } else {
                        log::warn!(
                            "{}; retrying, alerts wait on disk ({} queued)",
                            self.describe_failure(&endpoint, &e),
                            self.outbox.len()
                        );
                        outage_reported = true;
                    }
                    if let Flow::Stop = self.wait(Duration::from_secs_f64(backoff)) {
                        break;
                    }
                    backoff = (backoff * 2.0).min(self.cfg.reconnect_max_seconds);
                }
                Err(rumqttc::RecvTimeoutError::Timeout) => {}
                Err(rumqttc::RecvTimeoutError::Disconnected) => break,
            }
        }
        if connected {
            self.goodbye(&client, &mut conn);
        }
    }

    /// The log line's first part for a failed connection: a TLS handshake failure says what
    /// to check.
    fn describe_failure(&self, endpoint: &str, e: &ConnectionError) -> String {
        tls_failure_hint(&self.cfg, endpoint, e)
            .unwrap_or_else(|| format!("home MQTT: no connection to {endpoint} ({e})"))
    }

    /// Handles queued jobs without blocking.
    fn drain_jobs(&mut self, client: &Client, connected: bool) -> Flow {
        loop {
            match self.jobs.try_recv() {
                Ok(job) => {
                    if let Flow::Stop = self.handle_job(job, client, connected) {
                        return Flow::Stop;
                    }
                }
                Err(TryRecvError::Empty) => return Flow::Go,
                Err(TryRecvError::Disconnected) => return Flow::Stop,
            }
        }
    }

    /// Waits `d` (the reconnect back-off) while still handling jobs.
    fn wait(&mut self, d: Duration) -> Flow {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Flow::Go;
            }
            match self.jobs.recv_timeout(left) {
                Ok(Job::Shutdown) => return Flow::Stop,
                Ok(Job::Live {
                    topic,
                    payload,
                    retain,
                }) => {
                    if retain {
                        self.retained.insert(topic, payload);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Flow::Go,
                Err(RecvTimeoutError::Disconnected) => return Flow::Stop,
            }
        }
    }

    fn handle_job(&mut self, job: Job, client: &Client, connected: bool) -> Flow {
        match job {
            Job::Shutdown => Flow::Stop,
            Job::Live {
                topic,
                payload,
                retain,
            } => {
                if connected {
                    let _ = client.try_publish(&topic, QoS::AtMostOnce, retain, payload.clone());
                }
                if retain {
                    self.retained.insert(topic, payload);
                }
                Flow::Go
            }
        }
    }

    fn on_connect(&mut self, client: &Client) {
        if let Err(e) = client.try_subscribe(&self.topics.set, QoS::AtLeastOnce) {
            log::warn!("home MQTT: cannot subscribe to the set topic: {e}");
        }
        let _ = client.try_publish(&self.topics.available, QoS::AtMostOnce, true, ONLINE);
        for (topic, payload) in &self.discovery {
            let _ = client.try_publish(topic, QoS::AtMostOnce, true, payload.to_string());
        }
        for (topic, payload) in &self.retained {
            let _ = client.try_publish(topic, QoS::AtMostOnce, true, payload.clone());
        }
    }

    fn on_command(&self, payload: &[u8], retained: bool) {
        if retained {
            // A retained command would be replayed on every reconnect: never act on one.
            log::warn!(
                "home MQTT: ignored a retained message on {}; publish commands without retain",
                self.topics.set
            );
            return;
        }
        match parse_command(payload, CommandSource::Mqtt) {
            Ok(cmd) => {
                log::info!("home MQTT: command {}", cmd.name());
                if self
                    .commands
                    .send_timeout(Command::Home(cmd), Duration::from_secs(1))
                    .is_err()
                {
                    log::warn!("home MQTT: the command queue is full; command dropped");
                }
            }
            Err(e) => log::warn!("home MQTT: {}: {e}", self.topics.set),
        }
    }

    fn send_next(&self, client: &Client, inflight: &mut Option<Inflight>) {
        if let Some(f) = inflight {
            if f.sent.elapsed() < INFLIGHT_TIMEOUT {
                return;
            }
            log::warn!(
                "home MQTT: no PUBACK for record {}; sending it again",
                f.seq
            );
            *inflight = None;
        }
        let (seq, record) = match self.outbox.oldest() {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                log::error!("home MQTT: {e}");
                return;
            }
        };
        let topic = record["topic"].as_str().unwrap_or(&self.topics.events);
        let retain = record["retain"].as_bool().unwrap_or(false);
        let payload = record["payload"].to_string();
        if client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
            .is_ok()
        {
            *inflight = Some(Inflight {
                seq,
                pkid: None,
                sent: Instant::now(),
            });
        }
    }

    /// A clean exit: `offline` (retained), then DISCONNECT, then wait for it to be written.
    fn goodbye(&self, client: &Client, conn: &mut Connection) {
        let _ = client.try_publish(&self.topics.available, QoS::AtLeastOnce, true, OFFLINE);
        let _ = client.try_disconnect();
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("home MQTT: could not say offline in time");
                return;
            }
            match conn.recv_timeout(left) {
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) => {
                    log::info!("home MQTT: disconnected (offline)");
                    return;
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }
}

/// For a connection that failed in its TLS handshake: what the log says, naming the endpoint
/// and what to check. `None` for any other failure.
fn tls_failure_hint(cfg: &MqttConfig, endpoint: &str, e: &ConnectionError) -> Option<String> {
    let ConnectionError::Tls(tls) = e else {
        return None;
    };
    let check = match &cfg.ca_file {
        Some(ca) => format!(
            "check home.mqtt.ca_file ({}: the CA must be the one that signed the broker's \
             certificate, which must name {}), and that port {} is the broker's TLS listener",
            ca.display(),
            cfg.host,
            cfg.port
        ),
        None => format!(
            "check home.mqtt.ca_file (none is set, so only the built-in public roots are \
             trusted; name the CA that signed the broker's certificate), and that port {} is \
             the broker's TLS listener",
            cfg.port
        ),
    };
    Some(format!(
        "home MQTT: TLS handshake with {endpoint} failed: {tls}; {check}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<HomeCommand, CommandError> {
        parse_command(s.as_bytes(), CommandSource::Mqtt)
    }

    #[test]
    fn plain_word_commands() {
        let src = CommandSource::Mqtt;
        assert_eq!(
            p("acknowledge").unwrap(),
            HomeCommand::Acknowledge {
                source: src,
                by: "mqtt".into(),
                id: None
            }
        );
        assert_eq!(
            p(" ACK Anna Smith\n").unwrap(),
            HomeCommand::Acknowledge {
                source: src,
                by: "Anna Smith".into(),
                id: None
            }
        );
        assert_eq!(p("cancel").unwrap(), HomeCommand::Cancel { source: src });
        assert_eq!(p("ok").unwrap(), HomeCommand::Cancel { source: src });
        assert_eq!(
            p("mute").unwrap(),
            HomeCommand::Mute {
                source: src,
                seconds: None
            }
        );
        assert_eq!(
            p("mute 600").unwrap(),
            HomeCommand::Mute {
                source: src,
                seconds: Some(600.0)
            }
        );
        assert_eq!(p("unmute").unwrap(), HomeCommand::Unmute { source: src });
        assert!(matches!(p("mute soon"), Err(CommandError::Duration(_))));
        assert!(matches!(p("explode"), Err(CommandError::Unknown(_))));
        assert!(matches!(
            parse_command(&[0xff, 0xfe], src),
            Err(CommandError::NotText)
        ));
        assert!(matches!(
            parse_command(&[b'a'; 5000], src),
            Err(CommandError::TooLong(_))
        ));
    }

    #[test]
    fn json_commands() {
        let src = CommandSource::Mqtt;
        assert_eq!(
            p(r#"{"command": "acknowledge", "by": "Anna", "id": "n-1-fall"}"#).unwrap(),
            HomeCommand::Acknowledge {
                source: src,
                by: "Anna".into(),
                id: Some("n-1-fall".into())
            }
        );
        assert_eq!(
            p(r#"{"command": "mute", "seconds": 60}"#).unwrap(),
            HomeCommand::Mute {
                source: src,
                seconds: Some(60.0)
            }
        );
        assert!(matches!(
            p(r#"{"command": "cancel", "extra": 1}"#),
            Err(CommandError::Json(_))
        ));
    }

    #[test]
    fn a_tls_handshake_failure_says_what_to_check() {
        let cfg = MqttConfig {
            host: "ha.local".into(),
            port: 8883,
            tls: true,
            ca_file: Some("/etc/clipsight/ha-ca.pem".into()),
            ..MqttConfig::default()
        };
        let e = ConnectionError::Tls(rumqttc::TlsError::NoValidCertInChain);
        let line = tls_failure_hint(&cfg, "ha.local:8883", &e).unwrap();
        assert!(
            line.starts_with("home MQTT: TLS handshake with ha.local:8883 failed: "),
            "{line}"
        );
        assert!(
            line.contains("check home.mqtt.ca_file (/etc/clipsight/ha-ca.pem"),
            "{line}"
        );
        let no_ca = MqttConfig {
            ca_file: None,
            ..cfg.clone()
        };
        let line = tls_failure_hint(&no_ca, "ha.local:8883", &e).unwrap();
        assert!(line.contains("none is set"), "{line}");
        // Any other failure is an ordinary outage.
        assert!(
            tls_failure_hint(&cfg, "ha.local:8883", &ConnectionError::NetworkTimeout).is_none()
        );
    }

    #[test]
    fn discovery_configs_point_at_our_topics() {
        let cfg = MqttConfig::default();
        let topics = Topics::new("clipsight");
        let msgs = discovery_messages(&cfg, "flat3", "Flat 3", &topics);
        let config = |topic: &str| &msgs.iter().find(|(t, _)| t == topic).unwrap().1;
        let fall = config("homeassistant/binary_sensor/flat3/fall/config");
        assert_eq!(fall["state_topic"], "clipsight/state");
        assert_eq!(fall["availability_topic"], "clipsight/available");
        assert_eq!(fall["unique_id"], "flat3_fall");
        let ack = config("homeassistant/button/flat3/acknowledge/config");
        assert_eq!(ack["command_topic"], "clipsight/set");
        assert_eq!(ack["payload_press"], "acknowledge");
        assert!(msgs.iter().all(|(_, v)| v["device"]["name"] == "Flat 3"));
    }
}
