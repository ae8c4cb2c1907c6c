//! The home fall-and-hazard monitor: fall logic, event log and caregiver channels.
//!
//! Job: turn what the camera pipeline sees about a person into a spoken check-in, then (if
//! nobody answers) an alert that reaches a caregiver, with every step in an event log.
//!
//! Inputs, from the pipeline: one [`PersonObservation`] per frame (the smoothed score of the
//! fall label and its threshold, whether a person is seen up, or "can't see" for frames too
//! dark to judge), a [`HomeMonitor::tick`] about once a second when frames stop, and the
//! [`HomeCommand`]s of the button, the control socket and MQTT (all three arrive on the
//! pipeline's one command bus, which hands each to [`HomeMonitor::command`]).
//!
//! Outputs: the [`Utterance`]s to speak, returned to the caller (which owns speech); JSON-lines
//! [`events::EventRecord`]s in `<state_dir>/events.jsonl`; MQTT messages (`available`,
//! `events`, `alerts`, `state`, `stats`, Home Assistant discovery) and webhook POSTs. Alert and
//! event messages go through a disk [`outbox::Outbox`] first and leave it only when the broker
//! (PUBACK) or the web server (2xx) has them, so they survive outages and restarts. No image
//! is stored or sent. See `docs/home.md` for topics, payloads and set-up.
//!
//! Inside: the state machine ([`fall`]) turns observations, timers and commands into
//! [`FallAction`]s; `incidents` turns each action into a numbered record and a sentence;
//! `delivery` writes the record to the log and the outboxes of the channels.
//!
//! Threads: one per channel (MQTT, webhook, button); [`HomeMonitor::shutdown`] (or drop) stops
//! and joins them, publishing `offline` first. The state machine is pure and runs on the
//! caller's thread.
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
mod incidents;
pub mod mqtt;
pub mod observer;
pub mod outbox;
pub mod secrets;
mod thread;
mod tls;
pub mod webhook;

use std::time::Duration;

use crossbeam_channel::Sender;
use serde_json::{json, Value};

pub use crate::types::HomeCommand;
pub use clock::{HomeClock, Stamp};
pub use config::{ConfigError, HomeConfig, HomeSecrets, Secret};
pub use events::{EventLogError, EventRecord};
pub use fall::{AlertKind, CommandSource, FallAction, MonitorState, PersonObservation, View};
pub use outbox::OutboxError;

use crate::types::{Command, Utterance};

use button::ButtonReader;
use delivery::Delivery;
use fall::FallMonitor;
use incidents::Incidents;

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

/// Observations the monitor has counted, for the `stats` message.
#[derive(Debug, Default)]
struct Counters {
    observations: u64,
    cant_see_observations: u64,
}

/// The facade the pipeline drives. See the module docs.
pub struct HomeMonitor {
    cfg: HomeConfig,
    machine: FallMonitor,
    incidents: Incidents,
    delivery: Delivery,
    button: Option<ButtonReader>,
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

impl HomeMonitor {
    /// Validates `config`, opens the event log and outboxes under `state_dir`, and starts the
    /// configured channels. Records left in the outboxes by an earlier run are sent first.
    /// Commands from the button and the MQTT `set` topic go to `commands`, the pipeline's one
    /// command bus, which hands them back through [`HomeMonitor::command`].
    pub fn start(
        config: HomeConfig,
        secrets: HomeSecrets,
        commands: Sender<Command>,
    ) -> Result<HomeMonitor, HomeError> {
        config.validate()?;
        let machine = FallMonitor::new(&config.fall, config.inactivity.as_ref())?;
        let incidents = Incidents::new(&config);
        let state = state_json(&incidents, &machine.state());
        let delivery = Delivery::start(&config, &secrets, state, commands.clone())?;
        let mut monitor = HomeMonitor {
            machine,
            incidents,
            delivery,
            button: None,
            last_state: None,
            first_mono: None,
            next_stats_mono: None,
            counters: Counters::default(),
            pipeline_stats: Value::Null,
            cfg: config,
        };
        if let Some(b) = &monitor.cfg.button {
            let reader = ButtonReader::start(b, commands).map_err(|source| HomeError::Thread {
                what: "button",
                source,
            })?;
            monitor.button = Some(reader);
        }
        let cfg = &monitor.cfg;
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
        monitor.publish_state_if_changed();
        Ok(monitor)
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
        self.delivery.pending()
    }

    /// One frame's observation; returns what to say now.
    pub fn observe(&mut self, obs: &PersonObservation) -> Vec<Utterance> {
        self.counters.observations += 1;
        match obs.view {
            View::Seen {
                lying,
                lying_threshold,
                up,
            } if lying.is_finite() => self.incidents.seen(lying, lying_threshold, up),
            _ => {
                self.counters.cant_see_observations += 1;
                self.incidents.cant_see();
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
                    Some(id) => match self.incidents.find(id) {
                        Some(n) => Some(n),
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
        self.delivery.stop();
    }

    /// Each action becomes a record, logged and sent; then the state and the stats.
    fn after(&mut self, at: &Stamp, actions: Vec<FallAction>) -> Vec<Utterance> {
        let mut speech = Vec::new();
        for action in actions {
            let (recorded, say) = self.incidents.apply(at, action);
            if let Some(r) = recorded {
                log_record(&r.record);
                self.delivery.deliver(&r);
            }
            speech.extend(say);
        }
        self.publish_state_if_changed();
        self.maybe_stats(at);
        speech
    }

    fn publish_state_if_changed(&mut self) {
        let state = self.machine.state();
        if self.last_state == Some(state) {
            return;
        }
        self.last_state = Some(state);
        self.delivery
            .publish_state(&state_json(&self.incidents, &state));
    }

    fn maybe_stats(&mut self, at: &Stamp) {
        let first = *self.first_mono.get_or_insert(at.mono);
        if self.next_stats_mono.is_some_and(|t| at.mono < t) {
            return;
        }
        self.next_stats_mono = Some(at.mono + self.cfg.stats_interval_seconds);
        let uptime = (at.mono - first).max(0.0);
        let state = state_json(&self.incidents, &self.machine.state());
        self.delivery.update_heartbeat(&state, Some((at, uptime)));
        self.delivery.publish_stats(json!({
            "node": self.cfg.node_id,
            "time": at.unix,
            "uptime_seconds": uptime.round(),
            "observations": self.counters.observations,
            "cant_see_observations": self.counters.cant_see_observations,
            "state": state,
            "pipeline": self.pipeline_stats,
        }));
    }
}

/// The `state` topic's payload: the machine's state, with incident ids.
fn state_json(incidents: &Incidents, state: &MonitorState) -> Value {
    let alert = |a: &Option<fall::AlertStatus>| {
        a.map(|a| {
            json!({
                "id": incidents.id(a.incident),
                "acknowledged": a.acknowledged,
                "escalated": a.escalated,
            })
        })
    };
    let escalated = [state.fall_alert, state.inactivity_alert]
        .iter()
        .flatten()
        .any(|a| a.escalated && !a.acknowledged);
    json!({
        "fall": state.fall,
        "fall_alert": alert(&state.fall_alert),
        "inactivity_alert": alert(&state.inactivity_alert),
        "escalated": escalated,
        "cant_see": state.cant_see,
        "muted": state.muted,
    })
}

fn log_record(r: &EventRecord) {
    let step = serde_json::to_value(r.step)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let spoken = r
        .spoken
        .as_deref()
        .map(|s| format!(", saying {s:?}"))
        .unwrap_or_default();
    log::info!("home: {} {step} {:?}{spoken}", r.id, r.update);
}

impl Drop for HomeMonitor {
    fn drop(&mut self) {
        self.stop_channels();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Kind;
    use events::{AlertState, Step, UpdateType};

    fn monitor(dir: &std::path::Path) -> HomeMonitor {
        let cfg = HomeConfig {
            state_dir: dir.to_path_buf(),
            ..HomeConfig::default()
        };
        HomeMonitor::start(cfg, HomeSecrets::default(), crate::controls::bus().0).unwrap()
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
        let e =
            HomeMonitor::start(cfg, HomeSecrets::default(), crate::controls::bus().0).unwrap_err();
        assert!(e.to_string().contains("checkin_seconds"), "{e}");
    }
}
