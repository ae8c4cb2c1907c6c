//! The home fall-and-hazard monitor: fall logic, event log and caregiver channels.
//!
//! Job: turn what the camera pipeline sees about a person into a spoken check-in, then (if
//! nobody answers) an alert that reaches a caregiver, with every step in an event log.
//!
//! Inputs, from the pipeline: one [`PersonObservation`] per frame (the smoothed score of the
//! fall label and its threshold, whether a person is seen up, or "can't see" for frames too
//! dark to judge), a [`HomeMonitor::tick`] about once a second when frames stop, and the
//! [`HomeCommand`]s of the button, the control socket and MQTT (the latter two arrive on
//! [`HomeMonitor::commands`]; the pipeline hands each to [`HomeMonitor::command`]).
//!
//! Outputs: the [`Utterance`]s to speak, returned to the caller (which owns speech); JSON-lines
//! [`events::EventRecord`]s in `<state_dir>/events.jsonl`; MQTT messages (`available`,
//! `events`, `alerts`, `state`, `stats`, Home Assistant discovery) and webhook POSTs. Alert and
//! event messages go through a disk [`outbox::Outbox`] first and leave it only when the broker
//! (PUBACK) or the web server (2xx) has them, so they survive outages and restarts. No image
//! is stored or sent. See `docs/home.md` for topics, payloads and set-up.
//!
//! Threads: one per channel (MQTT, webhook, button); [`HomeMonitor::shutdown`] (or drop) stops
//! and joins them, publishing `offline` first. The state machine itself ([`fall`]) is pure and
//! runs on the caller's thread.
//!
//! Failures: [`HomeMonitor::start`] fails with a [`HomeError`] on a bad config or an unusable
//! state directory. After that nothing fails: a write error on the log or the outbox is
//! logged and counted (and the message still goes out from memory), a lost broker or web
//! server is retried.

pub mod button;
pub mod clock;
pub mod config;
mod delivery;
pub mod events;
pub mod fall;
pub mod mqtt;
pub mod observer;
pub mod outbox;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};

pub use clock::{HomeClock, Stamp};
pub use config::{ConfigError, HomeConfig, HomeSecrets, Secret};
pub use events::{EventLogError, EventRecord};
pub use fall::{AlertKind, CommandSource, FallAction, MonitorState, PersonObservation, View};
pub use outbox::OutboxError;

use crate::types::{Kind, Utterance};

use button::ButtonReader;
use events::{AlertInfo, AlertState, Contact, EventLog, IncidentKind, Scores, Step, UpdateType};
use fall::{FallMonitor, IncidentId};
use mqtt::{MqttChannel, Topics};
use outbox::Outbox;
use webhook::WebhookChannel;

/// Commands that may wait in the command channel.
pub const COMMAND_QUEUE: usize = 64;
/// How long a clean shutdown waits for the MQTT thread (it says `offline` first).
pub const MQTT_SHUTDOWN_WAIT: Duration = Duration::from_secs(4);
/// The label of inactivity incidents.
pub const INACTIVITY_LABEL: &str = "not seen up";
/// The label of can't-see incidents.
pub const CANT_SEE_LABEL: &str = "can't see";
/// The label of mute incidents.
pub const MUTE_LABEL: &str = "muted";

/// Why the home monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// `[home]` has an invalid value, or a secret cannot be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `home.fall_label` is not a label of the loaded prompt banks.
    #[error("home.fall_label {label:?} is not a label of the loaded banks ({labels})")]
    FallLabel {
        /// The configured fall label.
        label: String,
        /// The banks' labels, comma-separated.
        labels: String,
    },
    /// The event log in `state_dir` cannot be opened.
    #[error(transparent)]
    EventLog(#[from] EventLogError),
    /// A channel's outbox in `state_dir` cannot be opened.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// A channel's thread (MQTT, webhook, button) cannot be spawned.
    #[error("cannot start the home {what} thread")]
    Thread {
        /// Which channel ("MQTT", "webhook", "button").
        what: &'static str,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
}

/// A command for the monitor, from the button, the control socket or the MQTT `set` topic.
#[derive(Debug, Clone, PartialEq)]
pub enum HomeCommand {
    /// "I am all right": ends a check-in or an alert.
    Cancel {
        /// Where the command came from.
        source: CommandSource,
    },
    /// A caregiver has seen the alert `id` (every active alert when `None`).
    Acknowledge {
        /// Where the command came from.
        source: CommandSource,
        /// Who acknowledged: a caregiver's name, or the source's name when none was given.
        by: String,
        /// The incident's id; `None`: every active alert.
        id: Option<String>,
    },
    /// No new check-ins or alerts for `seconds` (default from the config, at most a day).
    Mute {
        /// Where the command came from.
        source: CommandSource,
        /// How long, in seconds; `None`: `fall.mute_default_seconds`.
        seconds: Option<f64>,
    },
    /// Ends a mute early.
    Unmute {
        /// Where the command came from.
        source: CommandSource,
    },
}

impl HomeCommand {
    /// The command's name for logs ("cancel", "acknowledge", "mute", "unmute").
    pub fn name(&self) -> &'static str {
        match self {
            HomeCommand::Cancel { .. } => "cancel",
            HomeCommand::Acknowledge { .. } => "acknowledge",
            HomeCommand::Mute { .. } => "mute",
            HomeCommand::Unmute { .. } => "unmute",
        }
    }
}

#[derive(Debug)]
struct Incident {
    id: String,
    kind: IncidentKind,
    label: String,
    start_unix: f64,
    seq: u32,
    lying_max: Option<f32>,
    alert: AlertInfo,
    /// The incident reached the alert stage: its records go to `alerts` and the webhook.
    alerted: bool,
    muted_until: Option<f64>,
}

#[derive(Debug, Default)]
struct Counters {
    observations: u64,
    cant_see_observations: u64,
    records: u64,
    log_errors: u64,
    outbox_errors: u64,
}

/// The facade the pipeline drives. See the module docs.
pub struct HomeMonitor {
    cfg: HomeConfig,
    machine: FallMonitor,
    log: EventLog,
    incidents: HashMap<IncidentId, Incident>,
    last_scores: Scores,
    topics: Option<Topics>,
    mqtt: Option<MqttChannel>,
    mqtt_outbox: Option<Arc<Outbox>>,
    webhook: Option<WebhookChannel>,
    webhook_outbox: Option<Arc<Outbox>>,
    escalation_outbox: Option<Arc<Outbox>>,
    button: Option<ButtonReader>,
    commands_tx: Sender<HomeCommand>,
    commands_rx: Receiver<HomeCommand>,
    heartbeat: Arc<Mutex<Value>>,
    last_state: Option<MonitorState>,
    first_mono: Option<f64>,
    next_stats_mono: Option<f64>,
    counters: Counters,
    pipeline_stats: Value,
}

impl std::fmt::Debug for HomeMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeMonitor")
            .field("node_id", &self.cfg.node_id)
            .field("state", &self.machine.state())
            .finish_non_exhaustive()
    }
}

fn outbox_dir(cfg: &HomeConfig, name: &str) -> std::path::PathBuf {
    cfg.state_dir.join("outbox").join(name)
}

impl HomeMonitor {
    /// Validates `config`, opens the event log and outboxes under `state_dir`, and starts the
    /// configured channels. Records left in the outboxes by an earlier run are sent first.
    pub fn start(config: HomeConfig, secrets: HomeSecrets) -> Result<HomeMonitor, HomeError> {
        config.validate()?;
        let machine = FallMonitor::new(&config.fall, config.inactivity.as_ref())?;
        let log = EventLog::open(&config.state_dir, &config.event_log)?;
        let (commands_tx, commands_rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
        let heartbeat = Arc::new(Mutex::new(json!({
            "topic": "heartbeat",
            "type": "heartbeat",
            "node": config.node_id,
        })));
        let mut monitor = HomeMonitor {
            machine,
            log,
            incidents: HashMap::new(),
            last_scores: Scores::default(),
            topics: None,
            mqtt: None,
            mqtt_outbox: None,
            webhook: None,
            webhook_outbox: None,
            escalation_outbox: None,
            button: None,
            commands_tx,
            commands_rx,
            heartbeat,
            last_state: None,
            first_mono: None,
            next_stats_mono: None,
            counters: Counters::default(),
            pipeline_stats: Value::Null,
            cfg: config,
        };
        let cfg = monitor.cfg.clone();
        monitor.update_heartbeat(None);
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            let mut hb = monitor.heartbeat.lock().unwrap_or_else(|e| e.into_inner());
            hb["time"] = json!(now.as_secs_f64());
        }
        if let Some(m) = &cfg.mqtt {
            let outbox = Arc::new(Outbox::open(&outbox_dir(&cfg, "mqtt"))?);
            let channel = MqttChannel::start(
                m,
                &cfg.node_id,
                &cfg.name,
                secrets.mqtt_password.clone(),
                outbox.clone(),
                monitor.commands_tx.clone(),
            )
            .map_err(|source| HomeError::Thread {
                what: "MQTT",
                source,
            })?;
            monitor.topics = Some(Topics::new(&m.topic_prefix));
            monitor.mqtt = Some(channel);
            monitor.mqtt_outbox = Some(outbox);
        }
        if let Some(w) = &cfg.webhook {
            let primary = Arc::new(Outbox::open(&outbox_dir(&cfg, "webhook"))?);
            let escalation = match &w.escalation_url {
                Some(_) => Some(Arc::new(Outbox::open(&outbox_dir(
                    &cfg,
                    "webhook-escalation",
                ))?)),
                None => None,
            };
            let channel = WebhookChannel::start(
                w,
                secrets.webhook_token.clone(),
                primary.clone(),
                escalation.clone(),
                monitor.heartbeat.clone(),
            )
            .map_err(|source| HomeError::Thread {
                what: "webhook",
                source,
            })?;
            monitor.webhook = Some(channel);
            monitor.webhook_outbox = Some(primary);
            monitor.escalation_outbox = escalation;
        }
        if let Some(b) = &cfg.button {
            let reader = ButtonReader::start(b, monitor.commands_tx.clone()).map_err(|source| {
                HomeError::Thread {
                    what: "button",
                    source,
                }
            })?;
            monitor.button = Some(reader);
        }
        monitor.publish_state_if_changed();
        if cfg.mqtt.is_none() && cfg.webhook.is_none() {
            log::warn!(
                "home monitor: no [home.mqtt] or [home.webhook] configured: a fall is spoken \
                 about and logged, but nobody is alerted"
            );
        }
        log::info!(
            "home monitor {} started (MQTT {}, webhook {}, button {})",
            cfg.node_id,
            if cfg.mqtt.is_some() { "on" } else { "off" },
            if cfg.webhook.is_some() { "on" } else { "off" },
            if cfg.button.is_some() { "on" } else { "off" }
        );
        Ok(monitor)
    }

    /// Commands from the MQTT `set` topic and the button. Hand each to [`HomeMonitor::command`].
    pub fn commands(&self) -> Receiver<HomeCommand> {
        self.commands_rx.clone()
    }

    /// The state machine's state now.
    pub fn state(&self) -> MonitorState {
        self.machine.state()
    }

    /// Extra numbers for the next `stats` message (frame rate, encoder latency, ...).
    pub fn set_pipeline_stats(&mut self, stats: Value) {
        self.pipeline_stats = stats;
    }

    /// Undelivered records: (MQTT, webhook first contact, webhook second contact).
    pub fn pending_deliveries(&self) -> (usize, usize, usize) {
        let n = |o: &Option<Arc<Outbox>>| o.as_ref().map_or(0, |o| o.len());
        (
            n(&self.mqtt_outbox),
            n(&self.webhook_outbox),
            n(&self.escalation_outbox),
        )
    }

    /// One frame's observation; returns what to say now.
    pub fn observe(&mut self, obs: &PersonObservation) -> Vec<Utterance> {
        self.counters.observations += 1;
        match obs.view {
            View::Seen {
                lying,
                lying_threshold,
                up,
            } if lying.is_finite() => {
                self.last_scores.lying = Some(lying);
                self.last_scores.lying_threshold = Some(lying_threshold);
                self.last_scores.up = Some(up);
                for inc in self.incidents.values_mut() {
                    if inc.kind == IncidentKind::Fall {
                        inc.lying_max = Some(inc.lying_max.map_or(lying, |m| m.max(lying)));
                    }
                }
            }
            _ => {
                self.counters.cant_see_observations += 1;
                self.last_scores.lying = None;
                self.last_scores.up = None;
            }
        }
        let actions = self.machine.observe(obs);
        self.after(&obs.at, actions)
    }

    /// Runs the timers; call about once a second (also when no frames come). Returns what
    /// to say.
    pub fn tick(&mut self, at: &Stamp) -> Vec<Utterance> {
        let actions = self.machine.tick(at);
        self.after(at, actions)
    }

    /// A command from the button, the control socket or MQTT; returns what to say.
    pub fn command(&mut self, at: &Stamp, cmd: HomeCommand) -> Vec<Utterance> {
        let actions = match &cmd {
            HomeCommand::Cancel { source } => self.machine.cancel(at, *source),
            HomeCommand::Acknowledge { by, id, .. } => {
                let target = match id {
                    None => None,
                    Some(id) => match self.incidents.iter().find(|(_, inc)| &inc.id == id) {
                        Some((n, _)) => Some(*n),
                        None => {
                            log::warn!("home: acknowledge: no active incident {id:?}");
                            return self.after(at, Vec::new());
                        }
                    },
                };
                self.machine.acknowledge(at, by, target)
            }
            HomeCommand::Mute { source, seconds } => self.machine.mute(at, *seconds, *source),
            HomeCommand::Unmute { .. } => self.machine.unmute(at),
        };
        if actions.is_empty() {
            log::info!("home: command {} changed nothing", cmd.name());
        }
        self.after(at, actions)
    }

    /// Stops the channels: the MQTT thread publishes `offline` and disconnects. Records not
    /// yet delivered stay on disk for the next start.
    pub fn shutdown(mut self) {
        self.stop_channels();
    }

    fn stop_channels(&mut self) {
        if let Some(mut b) = self.button.take() {
            b.shutdown();
        }
        if let Some(mut w) = self.webhook.take() {
            w.shutdown();
        }
        if let Some(mut m) = self.mqtt.take() {
            m.shutdown(MQTT_SHUTDOWN_WAIT);
        }
    }

    fn after(&mut self, at: &Stamp, actions: Vec<FallAction>) -> Vec<Utterance> {
        let mut speech = Vec::new();
        for action in actions {
            if let Some(u) = self.emit(at, action) {
                speech.push(u);
            }
        }
        self.publish_state_if_changed();
        self.maybe_stats(at);
        speech
    }

    fn new_incident(
        &mut self,
        n: IncidentId,
        kind: IncidentKind,
        label: &str,
        start_unix: f64,
    ) -> &mut Incident {
        let id = format!(
            "{}-{}-{}",
            self.cfg.node_id,
            (start_unix * 1000.0).round() as i64,
            kind.as_str()
        );
        self.incidents.entry(n).or_insert(Incident {
            id,
            kind,
            label: label.to_string(),
            start_unix,
            seq: 0,
            lying_max: None,
            alert: AlertInfo::default(),
            alerted: false,
            muted_until: None,
        })
    }

    /// Turns one action into a record, writes and sends it; returns what to say.
    fn emit(&mut self, at: &Stamp, action: FallAction) -> Option<Utterance> {
        let speech = self.cfg.speech.clone();
        let fall_label = self.cfg.fall_label.clone();
        // A check-in or alert sentence interrupts and has the earcon; the others are status.
        // `t` is the pipeline's to set (the observer knows its clock).
        let say = |text: &str, kind| {
            (!text.is_empty()).then(|| {
                let urgent = kind == Kind::CheckIn;
                Utterance {
                    text: text.to_string(),
                    kind,
                    priority: 0,
                    t: 0.0,
                    interrupt: urgent,
                    earcon: urgent,
                }
            })
        };
        let (n, step, update, by, utterance) = match action {
            FallAction::CheckIn {
                incident,
                lying_since,
            } => {
                let start = at.unix - (at.mono - lying_since).max(0.0);
                let lying = self.last_scores.lying;
                let inc = self.new_incident(incident, IncidentKind::Fall, &fall_label, start);
                inc.alert.state = AlertState::CheckIn;
                inc.lying_max = lying;
                let u = say(&speech.checkin, Kind::CheckIn);
                (incident, Step::CheckIn, UpdateType::New, None, u)
            }
            FallAction::CheckInCancelled { incident, by } => {
                self.with(incident, |inc| inc.alert.state = AlertState::None);
                let u = say(&speech.cancelled, Kind::Status);
                (
                    incident,
                    Step::CheckInCancelled,
                    UpdateType::End,
                    Some(by.as_str().to_string()),
                    u,
                )
            }
            FallAction::Recovered { incident } => {
                self.with(incident, |inc| inc.alert.state = AlertState::None);
                (incident, Step::Recovered, UpdateType::End, None, None)
            }
            FallAction::AlertRaised { incident, kind } => {
                let update = match kind {
                    AlertKind::Fall => UpdateType::Update,
                    AlertKind::Inactivity => {
                        self.new_incident(
                            incident,
                            IncidentKind::Inactivity,
                            INACTIVITY_LABEL,
                            at.unix,
                        );
                        UpdateType::New
                    }
                };
                self.with(incident, |inc| {
                    inc.alerted = true;
                    inc.alert.state = AlertState::Active;
                    inc.alert.raised_time = Some(at.unix);
                });
                let u = match kind {
                    AlertKind::Fall => say(&speech.alert_raised, Kind::CheckIn),
                    AlertKind::Inactivity => None,
                };
                (incident, Step::Alert, update, None, u)
            }
            FallAction::AlertReminder {
                incident, count, ..
            } => {
                self.with(incident, |inc| inc.alert.reminders = count);
                (incident, Step::Reminder, UpdateType::Update, None, None)
            }
            FallAction::AlertEscalated { incident, .. } => {
                self.with(incident, |inc| {
                    inc.alert.escalated = true;
                    inc.alert.contact = Contact::Secondary;
                    inc.alert.state = AlertState::Escalated;
                });
                (incident, Step::Escalated, UpdateType::Update, None, None)
            }
            FallAction::AlertAcknowledged { incident, kind, by } => {
                self.with(incident, |inc| {
                    inc.alert.state = AlertState::Acknowledged;
                    inc.alert.acknowledged_by = Some(by.clone());
                    inc.alert.acknowledged_time = Some(at.unix);
                });
                let u = match kind {
                    AlertKind::Fall => say(&speech.acknowledged, Kind::Status),
                    AlertKind::Inactivity => None,
                };
                (
                    incident,
                    Step::Acknowledged,
                    UpdateType::Update,
                    Some(by),
                    u,
                )
            }
            FallAction::AlertResolved { incident, .. } => {
                self.with(incident, |inc| inc.alert.state = AlertState::Resolved);
                (incident, Step::Resolved, UpdateType::End, None, None)
            }
            FallAction::AlertCancelled { incident, kind, by } => {
                self.with(incident, |inc| inc.alert.state = AlertState::Cancelled);
                let u = match kind {
                    AlertKind::Fall if by.is_local() => say(&speech.cancelled, Kind::Status),
                    _ => None,
                };
                (
                    incident,
                    Step::Cancelled,
                    UpdateType::End,
                    Some(by.as_str().to_string()),
                    u,
                )
            }
            FallAction::CantSeeStarted { incident, .. } => {
                self.new_incident(incident, IncidentKind::CantSee, CANT_SEE_LABEL, at.unix);
                (incident, Step::CantSeeStarted, UpdateType::New, None, None)
            }
            FallAction::CantSeeEnded { incident } => {
                (incident, Step::CantSeeEnded, UpdateType::End, None, None)
            }
            FallAction::Muted {
                incident,
                until,
                by,
            } => {
                let update = if self.incidents.contains_key(&incident) {
                    UpdateType::Update
                } else {
                    UpdateType::New
                };
                let inc = self.new_incident(incident, IncidentKind::Mute, MUTE_LABEL, at.unix);
                inc.muted_until = Some(at.unix + (until - at.mono));
                (
                    incident,
                    Step::Muted,
                    update,
                    Some(by.as_str().to_string()),
                    None,
                )
            }
            FallAction::Unmuted { incident } => {
                self.with(incident, |inc| inc.muted_until = None);
                (incident, Step::Unmuted, UpdateType::End, None, None)
            }
        };
        let spoken = utterance.as_ref().map(|u| u.text.clone());
        let Some(inc) = self.incidents.get_mut(&n) else {
            log::warn!("home: {step:?} for an unknown incident {n}");
            return utterance;
        };
        inc.seq += 1;
        let scores = if inc.kind == IncidentKind::Fall || inc.kind == IncidentKind::Inactivity {
            Scores {
                lying_max: inc.lying_max,
                ..self.last_scores
            }
        } else {
            Scores {
                lying_max: None,
                ..self.last_scores
            }
        };
        let record = EventRecord {
            id: inc.id.clone(),
            update,
            kind: inc.kind,
            step,
            label: inc.label.clone(),
            node: self.cfg.node_id.clone(),
            seq: inc.seq,
            time: at.unix,
            start_time: inc.start_unix,
            end_time: (update == UpdateType::End).then_some(at.unix),
            scores,
            spoken,
            alert: inc.alert.clone(),
            by,
            muted_until: inc.muted_until,
        };
        let alerted = inc.alerted;
        let escalated = inc.alert.escalated;
        if update == UpdateType::End {
            self.incidents.remove(&n);
        }
        log::info!(
            "home: {} {} {:?}{}",
            record.id,
            serde_json::to_value(record.step)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            record.update,
            record
                .spoken
                .as_deref()
                .map(|s| format!(", saying {s:?}"))
                .unwrap_or_default()
        );
        self.deliver(&record, alerted, escalated);
        utterance
    }

    fn with(&mut self, n: IncidentId, f: impl FnOnce(&mut Incident)) {
        if let Some(inc) = self.incidents.get_mut(&n) {
            f(inc);
        }
    }
}

impl Drop for HomeMonitor {
    fn drop(&mut self) {
        self.stop_channels();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(dir: &std::path::Path) -> HomeMonitor {
        let cfg = HomeConfig {
            state_dir: dir.to_path_buf(),
            ..HomeConfig::default()
        };
        HomeMonitor::start(cfg, HomeSecrets::default()).unwrap()
    }

    fn obs(t: f64, lying: f32, up: bool) -> PersonObservation {
        PersonObservation {
            at: Stamp::synthetic(t, 12.0 * 3600.0),
            view: View::Seen {
                lying,
                lying_threshold: 0.3,
                up,
            },
        }
    }

    fn records(dir: &std::path::Path) -> Vec<EventRecord> {
        std::fs::read_to_string(dir.join("events.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_fall_is_spoken_logged_and_alerted_with_one_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path());
        let mut said = Vec::new();
        let mut t = 0.0;
        while t < 5.0 {
            said.extend(m.observe(&obs(t, 0.1, true)));
            t += 0.5;
        }
        while t < 50.0 {
            said.extend(m.observe(&obs(t, 0.5, false)));
            t += 0.5;
        }
        assert_eq!(
            said.iter().map(|u| u.text.as_str()).collect::<Vec<_>>(),
            vec![
                "Are you all right? Press the button if you are.",
                "I have sent an alert to your carer."
            ]
        );
        assert_eq!(said[0].kind, Kind::CheckIn);
        let ack = HomeCommand::Acknowledge {
            source: CommandSource::Mqtt,
            by: "Anna".into(),
            id: None,
        };
        let said = m.command(&Stamp::synthetic(t, 12.0 * 3600.0), ack);
        assert_eq!(said[0].text, "Your carer has seen the alert.");
        while t < 80.0 {
            m.observe(&obs(t, 0.1, true));
            t += 0.5;
        }
        let recs = records(dir.path());
        let steps: Vec<Step> = recs.iter().map(|r| r.step).collect();
        assert_eq!(
            steps,
            vec![
                Step::CheckIn,
                Step::Alert,
                Step::Acknowledged,
                Step::Resolved
            ]
        );
        assert!(recs.iter().all(|r| r.id == recs[0].id));
        assert_eq!(
            recs.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(recs[0].update, UpdateType::New);
        assert_eq!(recs[3].update, UpdateType::End);
        assert!(recs[0].id.starts_with("clipsight-"));
        assert!(recs[0].id.ends_with("-fall"));
        // The fall started when lying was first seen, 5 s after the synthetic start.
        assert!(
            (recs[0].start_time - (clock::SYNTHETIC_EPOCH_UNIX + 12.0 * 3600.0 + 5.0)).abs() < 1e-6
        );
        assert_eq!(recs[1].alert.state, AlertState::Active);
        assert_eq!(recs[2].alert.acknowledged_by.as_deref(), Some("Anna"));
        assert_eq!(recs[3].alert.state, AlertState::Resolved);
        assert_eq!(recs[3].scores.lying_max, Some(0.5));
        assert!(recs[3].end_time.is_some());
        assert_eq!(m.state().fall, fall::FallPhase::Watching);
        m.shutdown();
    }

    #[test]
    fn the_monitor_can_move_to_the_pipeline_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<HomeMonitor>();
        assert_send::<HomeCommand>();
    }

    #[test]
    fn acknowledge_by_unknown_id_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = monitor(dir.path());
        let said = m.command(
            &Stamp::synthetic(1.0, 0.0),
            HomeCommand::Acknowledge {
                source: CommandSource::Mqtt,
                by: "x".into(),
                id: Some("nope".into()),
            },
        );
        assert!(said.is_empty());
    }

    #[test]
    fn bad_config_fails_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = HomeConfig {
            state_dir: dir.path().to_path_buf(),
            ..HomeConfig::default()
        };
        cfg.fall.checkin_seconds = f64::NAN;
        let e = HomeMonitor::start(cfg, HomeSecrets::default()).unwrap_err();
        assert!(e.to_string().contains("checkin_seconds"), "{e}");
    }
}
