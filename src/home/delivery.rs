//! Delivery: every event record goes to the fsync'd event log, then to the channels that
//! take it (MQTT `events`/`alerts`, the webhook, the escalation contact) through their disk
//! outboxes; the retained `state` topic, the heartbeat and the periodic `stats` message.
//! Nothing here fails: a write error is logged and counted, and the message still goes out.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use super::events::{EventRecord, Step};
use super::fall;
use super::fall::MonitorState;
use super::outbox::Priority;
use super::{HomeMonitor, Stamp};

impl HomeMonitor {
    /// Writes a record to the log and queues it for the channels.
    pub(super) fn deliver(&mut self, record: &EventRecord, alerted: bool, escalated: bool) {
        self.counters.records += 1;
        if let Err(e) = self.log.append(record) {
            self.counters.log_errors += 1;
            log::error!("home: {e}");
        }
        let value = match serde_json::to_value(record) {
            Ok(v) => v,
            Err(e) => {
                log::error!("home: cannot encode a record: {e}");
                return;
            }
        };
        let priority = if alerted {
            Priority::Alert
        } else {
            Priority::Event
        };
        // The alerts stream sees an incident from its alert on: that first record is `new`.
        let alert_value = alerted.then(|| {
            let mut v = value.clone();
            if record.step == Step::Alert {
                v["type"] = json!("new");
            }
            v
        });
        if let (Some(topics), Some(outbox)) = (&self.topics, &self.mqtt_outbox) {
            let mut queue = vec![(&topics.events, &value)];
            if let Some(v) = &alert_value {
                queue.push((&topics.alerts, v));
            }
            for (topic, payload) in queue {
                let rec = json!({"topic": topic, "payload": payload, "retain": false});
                if let Err(e) = outbox.push(&rec, priority) {
                    self.counters.outbox_errors += 1;
                    log::error!("home: {e}; sending without a disk copy");
                    if let Some(m) = &self.mqtt {
                        m.publish_live(topic.clone(), payload.to_string().into_bytes(), false);
                    }
                }
            }
        }
        let webhook_cfg = self.cfg.webhook.as_ref();
        let body = match (&alert_value, webhook_cfg) {
            (Some(v), Some(_)) => Some(with_topic(v, "alerts")),
            (None, Some(w)) if w.events => Some(with_topic(&value, "events")),
            _ => None,
        };
        if let Some(body) = body {
            let mut targets = Vec::new();
            if let Some(o) = &self.webhook_outbox {
                targets.push(o.clone());
            }
            if escalated && alerted {
                if let Some(o) = &self.escalation_outbox {
                    targets.push(o.clone());
                }
            }
            for o in targets {
                if let Err(e) = o.push(&body, priority) {
                    self.counters.outbox_errors += 1;
                    log::error!("home: {e}; this webhook POST is lost");
                }
            }
        }
    }

    pub(super) fn state_json(&self, state: &MonitorState) -> Value {
        let alert = |a: &Option<fall::AlertStatus>| {
            a.map(|a| {
                json!({
                    "id": self.incidents.get(&a.incident).map(|i| i.id.clone()),
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

    pub(super) fn publish_state_if_changed(&mut self) {
        let state = self.machine.state();
        if self.last_state == Some(state) {
            return;
        }
        self.last_state = Some(state);
        let v = self.state_json(&state);
        if let (Some(m), Some(t)) = (&self.mqtt, &self.topics) {
            m.publish_live(t.state.clone(), v.to_string().into_bytes(), true);
        }
        self.update_heartbeat(None);
    }

    pub(super) fn update_heartbeat(&self, at: Option<&Stamp>) {
        let state = self.state_json(&self.machine.state());
        let mut hb = self.heartbeat.lock().unwrap_or_else(|e| e.into_inner());
        hb["state"] = state;
        if let Some(at) = at {
            hb["time"] = json!(at.unix);
            if let Some(first) = self.first_mono {
                hb["uptime_seconds"] = json!((at.mono - first).max(0.0).round());
            }
        }
        let (m, w, e) = self.pending_deliveries();
        hb["outbox"] = json!({"mqtt": m, "webhook": w, "webhook_escalation": e});
    }

    pub(super) fn maybe_stats(&mut self, at: &Stamp) {
        let first = *self.first_mono.get_or_insert(at.mono);
        let due = self.next_stats_mono.is_none_or(|t| at.mono >= t);
        if !due {
            return;
        }
        self.next_stats_mono = Some(at.mono + self.cfg.stats_interval_seconds);
        self.update_heartbeat(Some(at));
        let Some(m) = &self.mqtt else {
            return;
        };
        let Some(topics) = &self.topics else {
            return;
        };
        let (om, ow, oe) = self.pending_deliveries();
        let webhook_delivered = self
            .webhook
            .as_ref()
            .map_or(0, |w| w.status.delivered.load(Ordering::Relaxed));
        let stats = json!({
            "node": self.cfg.node_id,
            "time": at.unix,
            "uptime_seconds": (at.mono - first).max(0.0).round(),
            "observations": self.counters.observations,
            "cant_see_observations": self.counters.cant_see_observations,
            "records": self.counters.records,
            "state": self.state_json(&self.machine.state()),
            "mqtt_connected": m.status.connected.load(Ordering::Relaxed),
            "delivered": {
                "mqtt": m.status.delivered.load(Ordering::Relaxed),
                "webhook": webhook_delivered,
            },
            "outbox": {"mqtt": om, "webhook": ow, "webhook_escalation": oe},
            "errors": {"event_log": self.counters.log_errors, "outbox": self.counters.outbox_errors},
            "pipeline": self.pipeline_stats,
        });
        m.publish_live(topics.stats.clone(), stats.to_string().into_bytes(), false);
    }
}

fn with_topic(v: &Value, topic: &str) -> Value {
    let mut v = v.clone();
    if let Some(map) = v.as_object_mut() {
        map.insert("topic".into(), json!(topic));
    }
    v
}
