//! Incidents: what the state machine does becomes numbered event records.
//!
//! Each [`FallAction`] opens, updates or ends an incident (a fall, an inactivity alert, a
//! can't-see stretch, a mute). Its small function here sets the incident's alert state and
//! picks the sentence to say; [`Incidents::apply`] then builds the [`EventRecord`] that
//! delivery writes and sends. An incident's records share its id and count up from seq 1.

use std::collections::HashMap;

use super::config::{HomeConfig, SpeechConfig};
use super::events::{
    AlertInfo, AlertState, Contact, EventRecord, IncidentKind, Scores, Step, UpdateType,
};
use super::fall::{AlertKind, CommandSource, FallAction, IncidentId};
use super::{Stamp, CANT_SEE_LABEL, INACTIVITY_LABEL, MUTE_LABEL};
use crate::types::{Kind, Utterance};

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

/// A record ready for delivery, and where it goes.
#[derive(Debug)]
pub(super) struct Recorded {
    pub record: EventRecord,
    /// The incident reached the alert stage (the `alerts` topic, the webhook).
    pub alerted: bool,
    /// The alert went to the second contact too.
    pub escalated: bool,
}

/// One action's effect on its incident, before it becomes a record.
struct Change {
    incident: IncidentId,
    step: Step,
    update: UpdateType,
    by: Option<String>,
    say: Option<Utterance>,
}

impl Change {
    fn new(incident: IncidentId, step: Step, update: UpdateType) -> Self {
        Change {
            incident,
            step,
            update,
            by: None,
            say: None,
        }
    }

    fn by(mut self, by: impl Into<String>) -> Self {
        self.by = Some(by.into());
        self
    }

    fn say(mut self, say: Option<Utterance>) -> Self {
        self.say = say;
        self
    }
}

/// The open incidents, and the scores the next record carries.
#[derive(Debug)]
pub(super) struct Incidents {
    node_id: String,
    fall_label: String,
    speech: SpeechConfig,
    open: HashMap<IncidentId, Incident>,
    scores: Scores,
}

/// A sentence of the monitor's. A check-in or alert interrupts and has the earcon; the others
/// are status. `t` is the pipeline's to set (the observer knows its clock).
fn sentence(text: &str, kind: Kind) -> Option<Utterance> {
    let urgent = kind == Kind::CheckIn;
    (!text.is_empty()).then(|| Utterance {
        text: text.to_string(),
        kind,
        priority: 0,
        t: 0.0,
        interrupt: urgent,
        earcon: urgent,
    })
}

impl Incidents {
    pub fn new(cfg: &HomeConfig) -> Self {
        Incidents {
            node_id: cfg.node_id.clone(),
            fall_label: cfg.fall_label.clone(),
            speech: cfg.speech.clone(),
            open: HashMap::new(),
            scores: Scores::default(),
        }
    }

    /// A frame in which the lying score could be judged.
    pub fn seen(&mut self, lying: f32, lying_threshold: f32, up: bool) {
        self.scores.lying = Some(lying);
        self.scores.lying_threshold = Some(lying_threshold);
        self.scores.up = Some(up);
        for inc in self.open.values_mut() {
            if inc.kind == IncidentKind::Fall {
                inc.lying_max = Some(inc.lying_max.map_or(lying, |m| m.max(lying)));
            }
        }
    }

    /// A frame too dark (or otherwise unfit) to judge.
    pub fn cant_see(&mut self) {
        self.scores.lying = None;
        self.scores.up = None;
    }

    /// The number of the open incident whose id is `id`.
    pub fn find(&self, id: &str) -> Option<IncidentId> {
        self.open
            .iter()
            .find(|(_, inc)| inc.id == id)
            .map(|(n, _)| *n)
    }

    /// The id of open incident `n`.
    pub fn id(&self, n: IncidentId) -> Option<&str> {
        self.open.get(&n).map(|inc| inc.id.as_str())
    }

    /// Applies one action: the record to deliver (none for an unknown incident) and what to say.
    pub fn apply(
        &mut self,
        at: &Stamp,
        action: FallAction,
    ) -> (Option<Recorded>, Option<Utterance>) {
        let change = match action {
            FallAction::CheckIn {
                incident,
                lying_since,
            } => self.check_in(at, incident, lying_since),
            FallAction::CheckInCancelled { incident, by } => self.check_in_cancelled(incident, by),
            FallAction::Recovered { incident } => self.recovered(incident),
            FallAction::AlertRaised { incident, kind } => self.alert_raised(at, incident, kind),
            FallAction::AlertReminder {
                incident, count, ..
            } => self.reminder(incident, count),
            FallAction::AlertEscalated { incident, .. } => self.escalated(incident),
            FallAction::AlertAcknowledged { incident, kind, by } => {
                self.acknowledged(at, incident, kind, by)
            }
            FallAction::AlertResolved { incident, .. } => self.resolved(incident),
            FallAction::AlertCancelled { incident, kind, by } => {
                self.alert_cancelled(incident, kind, by)
            }
            FallAction::CantSeeStarted { incident, .. } => {
                self.open(incident, IncidentKind::CantSee, CANT_SEE_LABEL, at.unix);
                Change::new(incident, Step::CantSeeStarted, UpdateType::New)
            }
            FallAction::CantSeeEnded { incident } => {
                Change::new(incident, Step::CantSeeEnded, UpdateType::End)
            }
            FallAction::Muted {
                incident,
                until,
                by,
            } => self.muted(at, incident, until, by),
            FallAction::Unmuted { incident } => {
                self.with(incident, |inc| inc.muted_until = None);
                Change::new(incident, Step::Unmuted, UpdateType::End)
            }
        };
        let say = change.say.clone();
        (self.record(at, change), say)
    }

    fn check_in(&mut self, at: &Stamp, n: IncidentId, lying_since: f64) -> Change {
        let start = at.unix - (at.mono - lying_since).max(0.0);
        let lying = self.scores.lying;
        let label = self.fall_label.clone();
        let inc = self.open(n, IncidentKind::Fall, &label, start);
        inc.alert.state = AlertState::CheckIn;
        inc.lying_max = lying;
        Change::new(n, Step::CheckIn, UpdateType::New)
            .say(sentence(&self.speech.checkin, Kind::CheckIn))
    }

    fn check_in_cancelled(&mut self, n: IncidentId, by: CommandSource) -> Change {
        self.with(n, |inc| inc.alert.state = AlertState::None);
        Change::new(n, Step::CheckInCancelled, UpdateType::End)
            .by(by.as_str())
            .say(sentence(&self.speech.cancelled, Kind::Status))
    }

    fn recovered(&mut self, n: IncidentId) -> Change {
        self.with(n, |inc| inc.alert.state = AlertState::None);
        Change::new(n, Step::Recovered, UpdateType::End)
    }

    fn alert_raised(&mut self, at: &Stamp, n: IncidentId, kind: AlertKind) -> Change {
        let update = match kind {
            AlertKind::Fall => UpdateType::Update,
            AlertKind::Inactivity => {
                self.open(n, IncidentKind::Inactivity, INACTIVITY_LABEL, at.unix);
                UpdateType::New
            }
        };
        self.with(n, |inc| {
            inc.alerted = true;
            inc.alert.state = AlertState::Active;
            inc.alert.raised_time = Some(at.unix);
        });
        let say = match kind {
            AlertKind::Fall => sentence(&self.speech.alert_raised, Kind::CheckIn),
            AlertKind::Inactivity => None,
        };
        Change::new(n, Step::Alert, update).say(say)
    }

    fn reminder(&mut self, n: IncidentId, count: u32) -> Change {
        self.with(n, |inc| inc.alert.reminders = count);
        Change::new(n, Step::Reminder, UpdateType::Update)
    }

    fn escalated(&mut self, n: IncidentId) -> Change {
        self.with(n, |inc| {
            inc.alert.escalated = true;
            inc.alert.contact = Contact::Secondary;
            inc.alert.state = AlertState::Escalated;
        });
        Change::new(n, Step::Escalated, UpdateType::Update)
    }

    fn acknowledged(&mut self, at: &Stamp, n: IncidentId, kind: AlertKind, by: String) -> Change {
        self.with(n, |inc| {
            inc.alert.state = AlertState::Acknowledged;
            inc.alert.acknowledged_by = Some(by.clone());
            inc.alert.acknowledged_time = Some(at.unix);
        });
        let say = match kind {
            AlertKind::Fall => sentence(&self.speech.acknowledged, Kind::Status),
            AlertKind::Inactivity => None,
        };
        Change::new(n, Step::Acknowledged, UpdateType::Update)
            .by(by)
            .say(say)
    }

    fn resolved(&mut self, n: IncidentId) -> Change {
        self.with(n, |inc| inc.alert.state = AlertState::Resolved);
        Change::new(n, Step::Resolved, UpdateType::End)
    }

    fn alert_cancelled(&mut self, n: IncidentId, kind: AlertKind, by: CommandSource) -> Change {
        self.with(n, |inc| inc.alert.state = AlertState::Cancelled);
        // Said only to the person at the device; a remote cancel is the carer's business.
        let say = match kind {
            AlertKind::Fall if by.is_local() => sentence(&self.speech.cancelled, Kind::Status),
            _ => None,
        };
        Change::new(n, Step::Cancelled, UpdateType::End)
            .by(by.as_str())
            .say(say)
    }

    fn muted(&mut self, at: &Stamp, n: IncidentId, until: f64, by: CommandSource) -> Change {
        let update = if self.open.contains_key(&n) {
            UpdateType::Update
        } else {
            UpdateType::New
        };
        let inc = self.open(n, IncidentKind::Mute, MUTE_LABEL, at.unix);
        inc.muted_until = Some(at.unix + (until - at.mono));
        Change::new(n, Step::Muted, update).by(by.as_str())
    }

    /// Incident `n`, opened now if it is new.
    fn open(
        &mut self,
        n: IncidentId,
        kind: IncidentKind,
        label: &str,
        start_unix: f64,
    ) -> &mut Incident {
        let id = format!(
            "{}-{}-{}",
            self.node_id,
            (start_unix * 1000.0).round() as i64,
            kind.as_str()
        );
        self.open.entry(n).or_insert(Incident {
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

    fn with(&mut self, n: IncidentId, f: impl FnOnce(&mut Incident)) {
        if let Some(inc) = self.open.get_mut(&n) {
            f(inc);
        }
    }

    /// The change's record; an incident that ends is closed.
    fn record(&mut self, at: &Stamp, c: Change) -> Option<Recorded> {
        let Some(inc) = self.open.get_mut(&c.incident) else {
            log::warn!("home: {:?} for an unknown incident {}", c.step, c.incident);
            return None;
        };
        inc.seq += 1;
        let lying_max = match inc.kind {
            IncidentKind::Fall | IncidentKind::Inactivity => inc.lying_max,
            _ => None,
        };
        let record = EventRecord {
            id: inc.id.clone(),
            update: c.update,
            kind: inc.kind,
            step: c.step,
            label: inc.label.clone(),
            node: self.node_id.clone(),
            seq: inc.seq,
            time: at.unix,
            start_time: inc.start_unix,
            end_time: (c.update == UpdateType::End).then_some(at.unix),
            scores: Scores {
                lying_max,
                ..self.scores
            },
            spoken: c.say.map(|u| u.text),
            alert: inc.alert.clone(),
            by: c.by,
            muted_until: inc.muted_until,
        };
        let recorded = Recorded {
            alerted: inc.alerted,
            escalated: inc.alert.escalated,
            record,
        };
        if c.update == UpdateType::End {
            self.open.remove(&c.incident);
        }
        Some(recorded)
    }
}
