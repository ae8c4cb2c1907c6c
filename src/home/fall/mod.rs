//! The fall state machine: pure logic, no clock, no I/O.
//!
//! Inputs: [`PersonObservation`]s (a smoothed "lying on the floor" score with its threshold,
//! whether a person is seen up, or "can't see"), cancels, acknowledgements, mutes and ticks,
//! each with a [`Stamp`]. Output: the [`FallAction`]s each call causes, in order, which the
//! [`HomeMonitor`](crate::home::HomeMonitor) turns into speech, event-log lines and caregiver
//! messages. Nothing here fails; out-of-order times are clamped to the latest seen.
//!
//! The rules (timers in [`FallConfig`]):
//! - **Pending**: lying evidence accumulates over consecutive visible frames with the score at
//!   or above its threshold. A visible frame below threshold ends the run. A frame too dark to
//!   judge neither adds nor ends it (darkness is not evidence either way).
//! - **Check-in** after T1 s of evidence: the caller speaks the check-in.
//! - A cancel (button, socket, MQTT) ends the check-in; no alert. The same lying run asks
//!   again only after `recheck_after_cancel_seconds`, or after the person was up for T3.
//! - Seen up (and not lying) for T3 s ends a check-in ("recovered") or resolves an alert.
//!   Darkness restarts that count: getting up needs evidence.
//! - **Alert** when T2 s pass after the check-in without a cancel (if the person is getting
//!   up right then, it waits for that to finish or fail). One incident raises one alert;
//!   reminders, escalation, acknowledgement and the end are updates of the same incident.
//! - **Escalation** when an alert stays unacknowledged for T4 s (once per alert).
//! - **Inactivity**: when the local time reaches `seen_up_by` and nobody was seen up since
//!   `window_start` that day, an inactivity alert (acknowledged, escalated and resolved like a
//!   fall alert; resolved when a person is seen up). The check is skipped on a day the monitor
//!   started after `window_start` (it cannot know about earlier that day).
//! - **Mute** (at most a day) stops new check-ins and alerts; alerts already raised go on.

use serde::Serialize;

use crate::home::clock::Stamp;
use crate::home::config::{
    ConfigError, FallConfig, InactivityConfig, RealertPolicy, MAX_MUTE_SECONDS,
};
pub use crate::types::CommandSource;

/// Seconds of "up" evidence that count as "seen up" for the inactivity check (shorter than
/// T3: walking through the room is a sign of life).
pub const SEEN_UP_MIN_SECONDS: f64 = 3.0;

/// Numbers incidents within one run of the monitor; the facade gives them stable string ids.
pub type IncidentId = u64;

/// What one frame showed about the person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum View {
    /// Too dark, blank or covered to judge anything.
    CantSee,
    /// The scene could be judged.
    Seen {
        /// The smoothed (calibrated) score of the fall label.
        lying: f32,
        /// The score at or above which the person counts as lying.
        lying_threshold: f32,
        /// A person is seen standing, sitting or walking.
        up: bool,
    },
}

/// One observation for the state machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PersonObservation {
    /// When the frame was captured.
    pub at: Stamp,
    /// What it showed.
    pub view: View,
}

/// Which kind of alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A check-in went unanswered.
    Fall,
    /// Nobody was seen up by `seen_up_by`.
    Inactivity,
}

/// What a call to the state machine caused.
#[derive(Debug, Clone, PartialEq)]
pub enum FallAction {
    /// Lying for T1: speak the check-in. Starts a fall incident.
    CheckIn {
        /// The new fall incident.
        incident: IncidentId,
        /// When the lying evidence began, in monotonic seconds.
        lying_since: f64,
    },
    /// The check-in was answered; no alert. Ends the incident.
    CheckInCancelled {
        /// The fall incident.
        incident: IncidentId,
        /// Who answered.
        by: CommandSource,
    },
    /// The person got up during the check-in; no alert. Ends the incident.
    Recovered {
        /// The fall incident.
        incident: IncidentId,
    },
    /// An alert: a fall incident's check-in went unanswered, or an inactivity incident starts.
    AlertRaised {
        /// The incident the alert belongs to.
        incident: IncidentId,
        /// Fall or inactivity.
        kind: AlertKind,
    },
    /// The alert is sent again (re-alert policy `repeat`).
    AlertReminder {
        /// The alert's incident.
        incident: IncidentId,
        /// Fall or inactivity.
        kind: AlertKind,
        /// Reminders sent so far, this one included (from 1).
        count: u32,
    },
    /// Unacknowledged for T4: tell the second contact.
    AlertEscalated {
        /// The alert's incident.
        incident: IncidentId,
        /// Fall or inactivity.
        kind: AlertKind,
    },
    /// A caregiver has seen the alert: no escalation or reminders after this.
    AlertAcknowledged {
        /// The alert's incident.
        incident: IncidentId,
        /// Fall or inactivity.
        kind: AlertKind,
        /// Who acknowledged.
        by: String,
    },
    /// The person was up again for T3 (fall) or seen up (inactivity). Ends the incident.
    AlertResolved {
        /// The alert's incident.
        incident: IncidentId,
        /// Fall or inactivity.
        kind: AlertKind,
    },
    /// Someone said all is well after the alert. Ends the incident.
    AlertCancelled {
        /// The alert's incident.
        incident: IncidentId,
        /// Fall or inactivity.
        kind: AlertKind,
        /// Who cancelled.
        by: CommandSource,
    },
    /// Frames have been too dark to judge for `cant_see_seconds`. Starts a can't-see incident.
    CantSeeStarted {
        /// The new can't-see incident.
        incident: IncidentId,
        /// A fall was pending, being checked or alerted when the view went dark.
        fall_pending: bool,
    },
    /// The view is back. Ends the can't-see incident.
    CantSeeEnded {
        /// The can't-see incident.
        incident: IncidentId,
    },
    /// New check-ins and alerts are off until `until` (monotonic seconds). A mute while muted
    /// is an update of the same incident.
    Muted {
        /// The mute incident.
        incident: IncidentId,
        /// When the mute ends, in monotonic seconds.
        until: f64,
        /// Who muted.
        by: CommandSource,
    },
    /// The mute ended (by command or because its time ran out). Ends the mute incident.
    Unmuted {
        /// The mute incident.
        incident: IncidentId,
    },
}

/// The fall part of [`MonitorState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FallPhase {
    /// Nothing going on.
    Watching,
    /// Lying seen, T1 not reached (or the check-in was answered and the person still lies).
    Pending,
    /// The check-in was spoken; waiting T2 for an answer.
    CheckIn,
    /// A fall alert is raised and not yet resolved.
    Alert,
}

/// An alert's state, for the state topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AlertStatus {
    /// The alert's incident.
    pub incident: IncidentId,
    /// A caregiver has seen it.
    pub acknowledged: bool,
    /// It went to the second contact.
    pub escalated: bool,
}

/// A snapshot of the machine, for the retained state topic and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MonitorState {
    /// Where the fall logic stands.
    pub fall: FallPhase,
    /// The raised fall alert, if any.
    pub fall_alert: Option<AlertStatus>,
    /// The raised inactivity alert, if any.
    pub inactivity_alert: Option<AlertStatus>,
    /// A can't-see incident is running.
    pub cant_see: bool,
    /// New check-ins and alerts are muted.
    pub muted: bool,
}

#[derive(Debug, Clone)]
struct Alert {
    incident: IncidentId,
    kind: AlertKind,
    raised: f64,
    last_sent: f64,
    acknowledged: bool,
    escalated: bool,
    reminders: u32,
}

impl Alert {
    fn new(incident: IncidentId, kind: AlertKind, t: f64) -> Alert {
        Alert {
            incident,
            kind,
            raised: t,
            last_sent: t,
            acknowledged: false,
            escalated: false,
            reminders: 0,
        }
    }

    fn status(&self) -> AlertStatus {
        AlertStatus {
            incident: self.incident,
            acknowledged: self.acknowledged,
            escalated: self.escalated,
        }
    }

    fn timers(&mut self, t: f64, cfg: &FallConfig, out: &mut Vec<FallAction>) {
        if self.acknowledged {
            return;
        }
        if !self.escalated && t - self.raised >= cfg.ack_seconds {
            self.escalated = true;
            out.push(FallAction::AlertEscalated {
                incident: self.incident,
                kind: self.kind,
            });
        }
        if let RealertPolicy::Repeat {
            every_seconds,
            max_repeats,
        } = cfg.realert
        {
            if self.reminders < max_repeats && t - self.last_sent >= every_seconds {
                self.reminders += 1;
                self.last_sent = t;
                out.push(FallAction::AlertReminder {
                    incident: self.incident,
                    kind: self.kind,
                    count: self.reminders,
                });
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Phase {
    Watching,
    CheckIn { incident: IncidentId, started: f64 },
    Alert(Alert),
}

#[derive(Debug, Clone, Copy)]
struct LyingRun {
    since: f64,
    evidence: f64,
}

#[derive(Debug, Clone)]
struct Inactivity {
    start: f64,
    by: f64,
    day: Option<i64>,
    watched_from: f64,
    seen_up: bool,
    checked: bool,
}

/// The fall, inactivity and can't-see state machine. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct FallMonitor {
    cfg: FallConfig,
    next_incident: IncidentId,
    last_t: Option<f64>,
    lying: Option<LyingRun>,
    prev_lying_seen: bool,
    /// Seconds of consecutive "up, not lying" evidence; `Some(0)` on the first such frame.
    up_run: Option<f64>,
    dark_since: Option<f64>,
    cant_see: Option<IncidentId>,
    phase: Phase,
    dismissed_until: Option<f64>,
    mute: Option<(IncidentId, f64)>,
    inactivity: Option<Inactivity>,
    inactivity_alert: Option<Alert>,
}

impl FallMonitor {
    /// A machine with these timers; `inactivity` turns the daily check on.
    pub fn new(
        cfg: &FallConfig,
        inactivity: Option<&InactivityConfig>,
    ) -> Result<FallMonitor, ConfigError> {
        let inactivity = match inactivity {
            Some(i) => {
                let (start, by) = i.window()?;
                Some(Inactivity {
                    start,
                    by,
                    day: None,
                    watched_from: 0.0,
                    seen_up: false,
                    checked: false,
                })
            }
            None => None,
        };
        Ok(FallMonitor {
            cfg: cfg.clone(),
            next_incident: 1,
            last_t: None,
            lying: None,
            prev_lying_seen: false,
            up_run: None,
            dark_since: None,
            cant_see: None,
            phase: Phase::Watching,
            dismissed_until: None,
            mute: None,
            inactivity,
            inactivity_alert: None,
        })
    }

    /// The state now.
    pub fn state(&self) -> MonitorState {
        let (fall, fall_alert) = match &self.phase {
            Phase::Watching if self.lying.is_some() => (FallPhase::Pending, None),
            Phase::Watching => (FallPhase::Watching, None),
            Phase::CheckIn { .. } => (FallPhase::CheckIn, None),
            Phase::Alert(a) => (FallPhase::Alert, Some(a.status())),
        };
        MonitorState {
            fall,
            fall_alert,
            inactivity_alert: self.inactivity_alert.as_ref().map(Alert::status),
            cant_see: self.cant_see.is_some(),
            muted: self.mute.is_some(),
        }
    }

    /// The incidents of the alerts now active (fall first).
    pub fn active_alerts(&self) -> Vec<IncidentId> {
        let mut v = Vec::new();
        if let Phase::Alert(a) = &self.phase {
            v.push(a.incident);
        }
        if let Some(a) = &self.inactivity_alert {
            v.push(a.incident);
        }
        v
    }

    fn new_incident(&mut self) -> IncidentId {
        let id = self.next_incident;
        self.next_incident += 1;
        id
    }

    /// Clamps `t` to be monotonic; returns (t, seconds since the last call, capped).
    fn advance(&mut self, t: f64) -> (f64, f64) {
        let t = if t.is_finite() { t } else { 0.0 };
        match self.last_t {
            Some(last) => {
                let t = t.max(last);
                self.last_t = Some(t);
                (t, (t - last).min(self.cfg.max_observation_gap_seconds))
            }
            None => {
                self.last_t = Some(t);
                (t, 0.0)
            }
        }
    }

    fn up_for(&self, seconds: f64) -> bool {
        self.up_run.is_some_and(|s| s >= seconds)
    }

    fn muted(&self) -> bool {
        self.mute.is_some()
    }

    /// One frame's observation.
    pub fn observe(&mut self, obs: &PersonObservation) -> Vec<FallAction> {
        let mut out = Vec::new();
        let (t, dt) = self.advance(obs.at.mono);
        self.roll_day(&obs.at);
        let seen = match obs.view {
            View::Seen {
                lying,
                lying_threshold,
                up,
            } if lying.is_finite() && lying_threshold.is_finite() => {
                Some((lying >= lying_threshold, up))
            }
            _ => None,
        };
        match seen {
            None => {
                self.prev_lying_seen = false;
                self.up_run = None;
                let since = *self.dark_since.get_or_insert(t);
                if self.cant_see.is_none() && t - since >= self.cfg.cant_see_seconds {
                    let incident = self.new_incident();
                    self.cant_see = Some(incident);
                    let fall_pending =
                        self.lying.is_some() || !matches!(self.phase, Phase::Watching);
                    out.push(FallAction::CantSeeStarted {
                        incident,
                        fall_pending,
                    });
                }
            }
            Some((is_lying, up)) => {
                self.dark_since = None;
                if let Some(incident) = self.cant_see.take() {
                    out.push(FallAction::CantSeeEnded { incident });
                }
                if is_lying {
                    match &mut self.lying {
                        Some(run) if self.prev_lying_seen => run.evidence += dt,
                        Some(_) => {} // back from darkness: the run goes on, the gap adds nothing
                        None => {
                            self.lying = Some(LyingRun {
                                since: t,
                                evidence: 0.0,
                            })
                        }
                    }
                    self.prev_lying_seen = true;
                    self.up_run = None;
                } else {
                    self.lying = None;
                    self.prev_lying_seen = false;
                    self.up_run = if up {
                        Some(self.up_run.map_or(0.0, |s| s + dt))
                    } else {
                        None
                    };
                    if self.up_for(SEEN_UP_MIN_SECONDS.min(self.cfg.recovery_seconds)) {
                        self.seen_up(&obs.at, &mut out);
                    }
                }
            }
        }
        self.step(&obs.at, t, &mut out);
        out
    }

    /// Runs the timers without an observation (call it about once a second when frames stop).
    pub fn tick(&mut self, at: &Stamp) -> Vec<FallAction> {
        let mut out = Vec::new();
        let (t, _) = self.advance(at.mono);
        self.roll_day(at);
        self.step(at, t, &mut out);
        out
    }

    /// "I am all right" (or, from a caregiver, "all is well"): ends a check-in or an alert.
    pub fn cancel(&mut self, at: &Stamp, by: CommandSource) -> Vec<FallAction> {
        let mut out = Vec::new();
        let (t, _) = self.advance(at.mono);
        self.roll_day(at);
        match std::mem::replace(&mut self.phase, Phase::Watching) {
            Phase::Watching => {
                if self.lying.is_some() {
                    self.dismissed_until = Some(t + self.cfg.recheck_after_cancel_seconds);
                }
            }
            Phase::CheckIn { incident, .. } => {
                self.dismissed_until = Some(t + self.cfg.recheck_after_cancel_seconds);
                out.push(FallAction::CheckInCancelled { incident, by });
            }
            Phase::Alert(a) => {
                self.dismissed_until = Some(t + self.cfg.recheck_after_cancel_seconds);
                out.push(FallAction::AlertCancelled {
                    incident: a.incident,
                    kind: a.kind,
                    by,
                });
            }
        }
        if let Some(a) = self.inactivity_alert.take() {
            out.push(FallAction::AlertCancelled {
                incident: a.incident,
                kind: a.kind,
                by,
            });
        }
        if by.is_local() {
            // Someone pressed the button at the device: a sign of life for today's check.
            if let Some(ina) = &mut self.inactivity {
                if at.second_of_day >= ina.start {
                    ina.seen_up = true;
                }
            }
        }
        self.step(at, t, &mut out);
        out
    }

    /// A caregiver has seen the alert: `incident` names one, `None` means every active alert.
    /// Stops escalation and reminders; the alert stays until resolved.
    pub fn acknowledge(
        &mut self,
        at: &Stamp,
        by: &str,
        incident: Option<IncidentId>,
    ) -> Vec<FallAction> {
        let mut out = Vec::new();
        let (t, _) = self.advance(at.mono);
        self.roll_day(at);
        let fall = match &mut self.phase {
            Phase::Alert(a) => Some(a),
            _ => None,
        };
        for a in fall.into_iter().chain(self.inactivity_alert.as_mut()) {
            if !a.acknowledged && incident.is_none_or(|i| i == a.incident) {
                a.acknowledged = true;
                out.push(FallAction::AlertAcknowledged {
                    incident: a.incident,
                    kind: a.kind,
                    by: by.to_string(),
                });
            }
        }
        self.step(at, t, &mut out);
        out
    }

    /// No new check-ins or alerts for `seconds` (default `mute_default_seconds`, at most a
    /// day; 0 or less unmutes). A check-in in progress is cancelled; raised alerts go on.
    pub fn mute(&mut self, at: &Stamp, seconds: Option<f64>, by: CommandSource) -> Vec<FallAction> {
        let mut out = Vec::new();
        let (t, _) = self.advance(at.mono);
        self.roll_day(at);
        let seconds = seconds
            .filter(|s| s.is_finite())
            .unwrap_or(self.cfg.mute_default_seconds)
            .min(MAX_MUTE_SECONDS);
        if seconds <= 0.0 {
            return self.unmute(at);
        }
        let until = t + seconds;
        let incident = match self.mute {
            Some((id, _)) => id,
            None => self.new_incident(),
        };
        self.mute = Some((incident, until));
        out.push(FallAction::Muted {
            incident,
            until,
            by,
        });
        if let Phase::CheckIn { incident, .. } = self.phase {
            self.phase = Phase::Watching;
            out.push(FallAction::CheckInCancelled { incident, by });
        }
        self.step(at, t, &mut out);
        out
    }

    /// Ends a mute.
    pub fn unmute(&mut self, at: &Stamp) -> Vec<FallAction> {
        let mut out = Vec::new();
        let (t, _) = self.advance(at.mono);
        if let Some((incident, _)) = self.mute.take() {
            out.push(FallAction::Unmuted { incident });
        }
        self.step(at, t, &mut out);
        out
    }

    fn roll_day(&mut self, at: &Stamp) {
        if let Some(ina) = &mut self.inactivity {
            if ina.day != Some(at.day) {
                ina.day = Some(at.day);
                ina.watched_from = at.second_of_day;
                ina.seen_up = false;
                ina.checked = false;
            }
        }
    }

    fn seen_up(&mut self, at: &Stamp, out: &mut Vec<FallAction>) {
        if let Some(ina) = &mut self.inactivity {
            if at.second_of_day >= ina.start {
                ina.seen_up = true;
            }
        }
        if let Some(a) = self.inactivity_alert.take() {
            out.push(FallAction::AlertResolved {
                incident: a.incident,
                kind: a.kind,
            });
        }
    }

    fn step(&mut self, at: &Stamp, t: f64, out: &mut Vec<FallAction>) {
        if let Some((incident, until)) = self.mute {
            if t >= until {
                self.mute = None;
                out.push(FallAction::Unmuted { incident });
            }
        }
        if let Some(until) = self.dismissed_until {
            if t >= until || self.up_for(self.cfg.recovery_seconds) {
                self.dismissed_until = None;
            }
        }
        let recovered = self.up_for(self.cfg.recovery_seconds);
        match &mut self.phase {
            Phase::Watching => {
                let due = self
                    .lying
                    .filter(|run| run.evidence >= self.cfg.lying_seconds);
                if let Some(run) = due {
                    if !self.muted() && self.dismissed_until.is_none() {
                        let incident = self.new_incident();
                        self.phase = Phase::CheckIn {
                            incident,
                            started: t,
                        };
                        out.push(FallAction::CheckIn {
                            incident,
                            lying_since: run.since,
                        });
                    }
                }
            }
            Phase::CheckIn { incident, started } => {
                let (incident, started) = (*incident, *started);
                if recovered {
                    self.phase = Phase::Watching;
                    out.push(FallAction::Recovered { incident });
                } else if t - started >= self.cfg.checkin_seconds && self.up_run.is_none() {
                    self.phase = Phase::Alert(Alert::new(incident, AlertKind::Fall, t));
                    out.push(FallAction::AlertRaised {
                        incident,
                        kind: AlertKind::Fall,
                    });
                }
            }
            Phase::Alert(a) => {
                if recovered {
                    let incident = a.incident;
                    self.phase = Phase::Watching;
                    out.push(FallAction::AlertResolved {
                        incident,
                        kind: AlertKind::Fall,
                    });
                } else {
                    a.timers(t, &self.cfg, out);
                }
            }
        }
        self.inactivity_step(at, t, out);
        if let Some(a) = &mut self.inactivity_alert {
            a.timers(t, &self.cfg, out);
        }
    }

    fn inactivity_step(&mut self, at: &Stamp, t: f64, out: &mut Vec<FallAction>) {
        let muted = self.muted();
        let Some(ina) = &mut self.inactivity else {
            return;
        };
        if ina.checked || ina.day != Some(at.day) || at.second_of_day < ina.by {
            return;
        }
        if ina.seen_up {
            ina.checked = true;
        } else if ina.watched_from > ina.start {
            ina.checked = true;
            log::info!(
                "inactivity check skipped today: the monitor started after the window opened"
            );
        } else if muted {
            // Checked once the mute ends, if still nobody was seen up today.
        } else if self.inactivity_alert.is_some() {
            ina.checked = true; // yesterday's alert is still open
        } else {
            ina.checked = true;
            let incident = self.next_incident;
            self.next_incident += 1;
            self.inactivity_alert = Some(Alert::new(incident, AlertKind::Inactivity, t));
            out.push(FallAction::AlertRaised {
                incident,
                kind: AlertKind::Inactivity,
            });
        }
    }
}

#[cfg(test)]
mod tests;
