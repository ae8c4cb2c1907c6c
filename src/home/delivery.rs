//! Delivery: every event record goes to the fsync'd event log, then to the channels that
//! take it (MQTT `events`/`alerts`, the webhook, the escalation contact) through their disk
//! outboxes; the retained `state` topic, the heartbeat and the periodic `stats` message.
//! Nothing here fails: a write error is logged and counted, and the message still goes out.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::events::{EventLog, Step};
use super::incidents::Recorded;
use super::mqtt::{MqttChannel, Topics};
use super::outbox::{Outbox, Priority};
use super::webhook::WebhookChannel;
use super::{HomeConfig, HomeError, HomeSecrets, Stamp, MQTT_SHUTDOWN_WAIT};
use crate::types::Command;

/// Where a failed write is counted.
#[derive(Debug, Default)]
pub(super) struct Errors {
    pub log: u64,
    pub outbox: u64,
}

/// The event log and the caregiver channels, with their outboxes.
#[derive(Debug)]
pub(super) struct Delivery {
    log: EventLog,
    topics: Option<Topics>,
    mqtt: Option<MqttChannel>,
    mqtt_outbox: Option<Arc<Outbox>>,
    webhook: Option<WebhookChannel>,
    webhook_outbox: Option<Arc<Outbox>>,
    escalation_outbox: Option<Arc<Outbox>>,
    /// Whether every event (not only alerts) goes to the webhook.
    webhook_events: bool,
    /// What the webhook's heartbeat POST says; kept up to date here.
    pub heartbeat: Arc<Mutex<Value>>,
    pub records: u64,
    pub errors: Errors,
}

fn outbox_dir(cfg: &HomeConfig, name: &str) -> PathBuf {
    cfg.state_dir.join("outbox").join(name)
}

fn thread_error(what: &'static str) -> impl FnOnce(std::io::Error) -> HomeError {
    move |source| HomeError::Thread { what, source }
}

impl Delivery {
    /// Opens the event log and the outboxes, and starts the configured channels, the
    /// heartbeat saying `state`; MQTT `set` commands go to `commands`.
    pub fn start(
        cfg: &HomeConfig,
        secrets: &HomeSecrets,
        state: Value,
        commands: crossbeam_channel::Sender<Command>,
    ) -> Result<Delivery, HomeError> {
        let log = EventLog::open(&cfg.state_dir, &cfg.event_log)?;
        let mut heartbeat = json!({
            "topic": "heartbeat",
            "type": "heartbeat",
            "node": cfg.node_id,
            "state": state,
        });
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            heartbeat["time"] = json!(now.as_secs_f64());
        }
        let mut d = Delivery {
            log,
            topics: None,
            mqtt: None,
            mqtt_outbox: None,
            webhook: None,
            webhook_outbox: None,
            escalation_outbox: None,
            webhook_events: cfg.webhook.as_ref().is_some_and(|w| w.events),
            heartbeat: Arc::new(Mutex::new(heartbeat)),
            records: 0,
            errors: Errors::default(),
        };
        if let Some(m) = &cfg.mqtt {
            let outbox = Arc::new(Outbox::open(&outbox_dir(cfg, "mqtt"))?);
            let password = secrets.mqtt_password.clone();
            let tls = super::tls::mqtt_client_config(m)?;
            let channel = MqttChannel::start(
                m,
                &cfg.node_id,
                &cfg.name,
                password,
                tls,
                outbox.clone(),
                commands,
            )
            .map_err(thread_error("MQTT"))?;
            d.topics = Some(Topics::new(&m.topic_prefix));
            d.mqtt = Some(channel);
            d.mqtt_outbox = Some(outbox);
        }
        if let Some(w) = &cfg.webhook {
            let roots = super::tls::webhook_roots(w)?;
            let primary = Arc::new(Outbox::open(&outbox_dir(cfg, "webhook"))?);
            let escalation = match &w.escalation_url {
                Some(_) => Some(Arc::new(Outbox::open(&outbox_dir(
                    cfg,
                    "webhook-escalation",
                ))?)),
                None => None,
            };
            let channel = WebhookChannel::start(
                w,
                secrets.webhook_token.clone(),
                roots,
                primary.clone(),
                escalation.clone(),
                d.heartbeat.clone(),
            )
            .map_err(thread_error("webhook"))?;
            d.webhook = Some(channel);
            d.webhook_outbox = Some(primary);
            d.escalation_outbox = escalation;
        }
        Ok(d)
    }

    /// Undelivered records: (MQTT, webhook first contact, webhook second contact).
    pub fn pending(&self) -> (usize, usize, usize) {
        let n = |o: &Option<Arc<Outbox>>| o.as_ref().map_or(0, |o| o.len());
        (
            n(&self.mqtt_outbox),
            n(&self.webhook_outbox),
            n(&self.escalation_outbox),
        )
    }

    /// Writes a record to the log and queues it for the channels.
    pub fn deliver(&mut self, r: &Recorded) {
        self.records += 1;
        if let Err(e) = self.log.append(&r.record) {
            self.errors.log += 1;
            log::error!("home: {e}");
        }
        let value = match serde_json::to_value(&r.record) {
            Ok(v) => v,
            Err(e) => {
                log::error!("home: cannot encode a record: {e}");
                return;
            }
        };
        let priority = if r.alerted {
            Priority::Alert
        } else {
            Priority::Event
        };
        // The alerts stream sees an incident from its alert on: that first record is `new`.
        let alert_value = r.alerted.then(|| {
            let mut v = value.clone();
            if r.record.step == Step::Alert {
                v["type"] = json!("new");
            }
            v
        });
        self.queue_mqtt(&value, alert_value.as_ref(), priority);
        let body = match &alert_value {
            Some(v) => Some(with_topic(v, "alerts")),
            None if self.webhook_events => Some(with_topic(&value, "events")),
            None => None,
        };
        if let Some(body) = body {
            let escalation = if r.escalated && r.alerted {
                self.escalation_outbox.as_ref()
            } else {
                None
            };
            for o in self.webhook_outbox.iter().chain(escalation) {
                if let Err(e) = o.push(&body, priority) {
                    self.errors.outbox += 1;
                    log::error!("home: {e}; this webhook POST is lost");
                }
            }
        }
    }

    fn queue_mqtt(&mut self, event: &Value, alert: Option<&Value>, priority: Priority) {
        let (Some(topics), Some(outbox)) = (&self.topics, &self.mqtt_outbox) else {
            return;
        };
        let queue =
            std::iter::once((&topics.events, event)).chain(alert.map(|v| (&topics.alerts, v)));
        for (topic, payload) in queue {
            let rec = json!({"topic": topic, "payload": payload, "retain": false});
            if let Err(e) = outbox.push(&rec, priority) {
                self.errors.outbox += 1;
                log::error!("home: {e}; sending without a disk copy");
                if let Some(m) = &self.mqtt {
                    m.publish_live(topic.clone(), payload.to_string().into_bytes(), false);
                }
            }
        }
    }

    /// Publishes the retained `state` topic and puts the state into the heartbeat.
    pub fn publish_state(&self, state: &Value) {
        if let (Some(m), Some(t)) = (&self.mqtt, &self.topics) {
            m.publish_live(t.state.clone(), state.to_string().into_bytes(), true);
        }
        self.update_heartbeat(state, None);
    }

    /// The heartbeat's state, outbox sizes and, given a time, its time and uptime.
    pub fn update_heartbeat(&self, state: &Value, at: Option<(&Stamp, f64)>) {
        let (m, w, e) = self.pending();
        let mut hb = self.heartbeat.lock().unwrap_or_else(|e| e.into_inner());
        hb["state"] = state.clone();
        if let Some((at, uptime)) = at {
            hb["time"] = json!(at.unix);
            hb["uptime_seconds"] = json!(uptime.round());
        }
        hb["outbox"] = json!({"mqtt": m, "webhook": w, "webhook_escalation": e});
    }

    /// Publishes a `stats` message: `stats` plus the channels' own numbers.
    pub fn publish_stats(&self, mut stats: Value) {
        let (Some(m), Some(topics)) = (&self.mqtt, &self.topics) else {
            return;
        };
        let (om, ow, oe) = self.pending();
        let webhook_delivered = self
            .webhook
            .as_ref()
            .map_or(0, |w| w.status.delivered.load(Ordering::Relaxed));
        stats["records"] = json!(self.records);
        stats["mqtt_connected"] = json!(m.status.connected.load(Ordering::Relaxed));
        stats["delivered"] = json!({
            "mqtt": m.status.delivered.load(Ordering::Relaxed),
            "webhook": webhook_delivered,
        });
        stats["outbox"] = json!({"mqtt": om, "webhook": ow, "webhook_escalation": oe});
        stats["errors"] = json!({"event_log": self.errors.log, "outbox": self.errors.outbox});
        m.publish_live(topics.stats.clone(), stats.to_string().into_bytes(), false);
    }

    /// Stops the channels: the MQTT thread publishes `offline` and disconnects.
    pub fn stop(&mut self) {
        if let Some(mut w) = self.webhook.take() {
            w.shutdown();
        }
        if let Some(mut m) = self.mqtt.take() {
            m.shutdown(MQTT_SHUTDOWN_WAIT);
        }
    }
}

fn with_topic(v: &Value, topic: &str) -> Value {
    let mut v = v.clone();
    if let Some(map) = v.as_object_mut() {
        map.insert("topic".into(), json!(topic));
    }
    v
}
