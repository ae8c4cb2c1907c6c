//! Event records and the event log.
//!
//! An [`EventRecord`] is one step of an incident (a fall, an inactivity alert, a can't-see
//! spell, a mute): a stable id, `type` new|update|end, label, scores, times, what was spoken
//! and the alert's state. The same record is a line of the event log, an MQTT `events` or
//! `alerts` message and a webhook body (see `docs/home.md`). No image is ever part of it.
//!
//! [`EventLog`] appends records as JSON lines to `<state_dir>/<file>` (0600), fsync'ing each
//! line, and rotates by size (`events.jsonl.1` is the newest old file; `keep` are kept).
//! Failures are [`EventLogError`]s naming the path; the monitor logs them and goes on.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::home::config::EventLogConfig;
use crate::home::outbox::{create_private_dir, private_file_options, sync_dir};

/// Why the event log could not be opened or written; names the file.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    /// Creating the directory, opening, writing, syncing or rotating the log failed.
    #[error("event log {path}: {action}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// What was being done ("cannot open", "cannot rotate", …).
        action: &'static str,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A record cannot be serialized to JSON.
    #[error("event log {path}: cannot encode a record")]
    Encode {
        /// The log file.
        path: PathBuf,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Frigate's event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateType {
    /// The first record of an incident (`"new"`).
    New,
    /// A later step of a running incident (`"update"`).
    Update,
    /// The incident's last record (`"end"`).
    End,
}

/// What an incident is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// A person lying on the floor: check-in, then perhaps an alert.
    Fall,
    /// Nobody seen up by the daily `seen_up_by` time.
    Inactivity,
    /// Frames too dark to judge for `cant_see_seconds`.
    CantSee,
    /// New check-ins and alerts switched off for a while.
    Mute,
}

impl IncidentKind {
    /// The kind's name as in records and ids ("fall", "inactivity", "cant_see", "mute").
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Fall => "fall",
            IncidentKind::Inactivity => "inactivity",
            IncidentKind::CantSee => "cant_see",
            IncidentKind::Mute => "mute",
        }
    }
}

/// The step of the incident this record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Lying for T1: the check-in was spoken.
    CheckIn,
    /// "I am all right" before T2: no alert.
    CheckInCancelled,
    /// The person got up during the check-in: no alert.
    Recovered,
    /// The alert was raised (an unanswered check-in, or inactivity).
    Alert,
    /// The alert was sent again (re-alert policy `repeat`).
    Reminder,
    /// Unacknowledged for T4: the second contact is told.
    Escalated,
    /// A caregiver has seen the alert.
    Acknowledged,
    /// The person was seen up again: the alert ends.
    Resolved,
    /// "I am all right" after the alert: the alert ends.
    Cancelled,
    /// Frames have been too dark to judge for `cant_see_seconds`.
    CantSeeStarted,
    /// The view is back.
    CantSeeEnded,
    /// A mute started (or was extended).
    Muted,
    /// A mute ended.
    Unmuted,
}

/// Where an incident's alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// No alert (a can't-see spell, a mute, a check-in answered in time).
    None,
    /// The check-in is running; an alert follows unless it is answered.
    CheckIn,
    /// Raised, not yet acknowledged.
    Active,
    /// Raised and sent to the second contact too.
    Escalated,
    /// A caregiver has seen it.
    Acknowledged,
    /// The person was seen up again.
    Resolved,
    /// Someone said all is well.
    Cancelled,
}

/// Who should hear about this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Contact {
    /// The first contact only.
    Primary,
    /// The alert escalated: the second contact as well as the first.
    Secondary,
}

/// The scores behind a record (null where the view was dark or nothing was seen yet).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Scores {
    /// The smoothed lying score at this step.
    pub lying: Option<f32>,
    /// The lying label's calibrated threshold.
    pub lying_threshold: Option<f32>,
    /// The highest lying score seen during the incident.
    pub lying_max: Option<f32>,
    /// Whether a person was seen up at this step.
    pub up: Option<bool>,
}

/// The alert part of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertInfo {
    /// Where the alert stands.
    pub state: AlertState,
    /// Unix seconds when the alert was raised.
    pub raised_time: Option<f64>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// Unix seconds when it was acknowledged.
    pub acknowledged_time: Option<f64>,
    /// Whether it escalated to the second contact.
    pub escalated: bool,
    /// Who should hear about this step.
    pub contact: Contact,
    /// Reminders sent so far (re-alert policy `repeat`).
    pub reminders: u32,
}

impl Default for AlertInfo {
    fn default() -> Self {
        AlertInfo {
            state: AlertState::None,
            raised_time: None,
            acknowledged_by: None,
            acknowledged_time: None,
            escalated: false,
            contact: Contact::Primary,
            reminders: 0,
        }
    }
}

/// One step of one incident: a log line, an MQTT message, a webhook body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Stable for the incident: `<node>-<start unix ms>-<kind>`.
    pub id: String,
    /// `type`: new, update or end.
    #[serde(rename = "type")]
    pub update: UpdateType,
    /// What the incident is about.
    pub kind: IncidentKind,
    /// The step this record reports.
    pub step: Step,
    /// The incident's label (the fall label, "not seen up", "can't see", "muted").
    pub label: String,
    /// The device's `node_id`.
    pub node: String,
    /// Counts the incident's records from 1; with `id` it names a record uniquely, so a
    /// receiver can drop the duplicates that at-least-once delivery may bring.
    pub seq: u32,
    /// Unix seconds of this step.
    pub time: f64,
    /// Unix seconds when the incident started.
    pub start_time: f64,
    /// Unix seconds when it ended (on its `end` record).
    pub end_time: Option<f64>,
    /// The smoothed scores at this step.
    pub scores: Scores,
    /// The sentence spoken at this step, if any.
    pub spoken: Option<String>,
    /// The alert's state.
    pub alert: AlertInfo,
    /// Who cancelled, acknowledged or muted (`button`, `socket`, `mqtt`, or a name).
    pub by: Option<String>,
    /// Unix seconds when a mute ends.
    pub muted_until: Option<f64>,
}

/// The append-only, fsync'd, size-rotated JSON-lines log.
#[derive(Debug)]
pub struct EventLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
    /// The last write may have left a partial line: start the next one on a new line.
    torn: bool,
}

impl EventLog {
    /// Opens (creating, 0600) the log in `dir`.
    pub fn open(dir: &Path, cfg: &EventLogConfig) -> Result<EventLog, EventLogError> {
        let path = dir.join(&cfg.file);
        let err = |action| {
            let path = path.clone();
            move |source| EventLogError::Io {
                path,
                action,
                source,
            }
        };
        create_private_dir(dir).map_err(err("cannot create the directory"))?;
        let (file, size) = Self::open_file(&path).map_err(err("cannot open"))?;
        Ok(EventLog {
            dir: dir.to_path_buf(),
            path,
            file,
            size,
            max_bytes: cfg.max_bytes,
            keep: cfg.keep,
            torn: false,
        })
    }

    fn open_file(path: &Path) -> std::io::Result<(File, u64)> {
        let file = private_file_options()
            .append(true)
            .create(true)
            .open(path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as a line and fsyncs it.
    pub fn append(&mut self, record: &EventRecord) -> Result<(), EventLogError> {
        let mut line = serde_json::to_vec(record).map_err(|source| EventLogError::Encode {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        if self.torn {
            line.insert(0, b'\n');
        }
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate().map_err(|source| EventLogError::Io {
                path: self.path.clone(),
                action: "cannot rotate",
                source,
            })?;
        }
        let result = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.size += line.len() as u64;
                self.torn = false;
                Ok(())
            }
            Err(source) => {
                self.torn = true;
                // Re-read the size: part of the line may be there.
                self.size = self.file.metadata().map(|m| m.len()).unwrap_or(self.size);
                Err(EventLogError::Io {
                    path: self.path.clone(),
                    action: "cannot append",
                    source,
                })
            }
        }
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{n}"));
        self.dir.join(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    std::fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        let (file, size) = Self::open_file(&self.path)?;
        self.file = file;
        self.size = size;
        self.torn = false;
        sync_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(n: u32) -> EventRecord {
        EventRecord {
            id: "node-1767225600000-fall".into(),
            update: if n == 1 {
                UpdateType::New
            } else {
                UpdateType::Update
            },
            kind: IncidentKind::Fall,
            step: Step::CheckIn,
            label: "person lying on the floor".into(),
            node: "node".into(),
            seq: n,
            time: 1_767_225_600.0 + f64::from(n),
            start_time: 1_767_225_600.0,
            end_time: None,
            scores: Scores {
                lying: Some(0.5),
                lying_threshold: Some(0.3),
                lying_max: Some(0.6),
                up: Some(false),
            },
            spoken: Some("Are you all right?".into()),
            alert: AlertInfo::default(),
            by: None,
            muted_until: None,
        }
    }

    #[test]
    fn lines_are_json_records_appended_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EventLogConfig::default();
        let mut log = EventLog::open(dir.path(), &cfg).unwrap();
        for n in 1..=3 {
            log.append(&record(n)).unwrap();
        }
        drop(log);
        let mut log = EventLog::open(dir.path(), &cfg).unwrap(); // reopen appends
        log.append(&record(4)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        let seqs: Vec<u32> = text
            .lines()
            .map(|l| serde_json::from_str::<EventRecord>(l).unwrap().seq)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["type"], "new");
        assert_eq!(v["kind"], "fall");
        assert_eq!(v["alert"]["state"], "none");
        assert_eq!(v["scores"]["lying"], 0.5);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let longest = (1..=30)
            .map(|n| serde_json::to_vec(&record(n)).unwrap().len() as u64 + 1)
            .max()
            .unwrap();
        let cfg = EventLogConfig {
            file: "events.jsonl".into(),
            max_bytes: longest * 3, // about three lines per file
            keep: 2,
        };
        let mut log = EventLog::open(dir.path(), &cfg).unwrap();
        for n in 1..=30 {
            log.append(&record(n)).unwrap();
        }
        let seqs = |name: &str| -> Vec<u32> {
            std::fs::read_to_string(dir.path().join(name))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<EventRecord>(l).unwrap().seq)
                .collect()
        };
        // Oldest to newest across the files: a run of consecutive records ending with the
        // last one; the oldest were dropped.
        let mut all = seqs("events.jsonl.2");
        all.extend(seqs("events.jsonl.1"));
        all.extend(seqs("events.jsonl"));
        assert_eq!(all.last(), Some(&30));
        assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
        assert!(all.len() < 30 && all.len() >= 5, "{all:?}");
        assert!(!dir.path().join("events.jsonl.3").exists());
        for name in ["events.jsonl", "events.jsonl.1", "events.jsonl.2"] {
            let len = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(len <= cfg.max_bytes, "{name}: {len}");
        }
    }
}
