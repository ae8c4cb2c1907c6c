//! The disk outbox: messages waiting for a caregiver channel to confirm delivery.
//!
//! Input: JSON records to deliver, pushed by the monitor. Each becomes one file,
//! `<seq>-<a|e>.json` (`a` alert, `e` event), written to a temporary name, fsync'd, renamed and
//! the directory fsync'd, all 0600 in a 0700 directory, so a record survives a crash, a broker
//! outage or a restart. Output: the oldest record, for the channel thread to send; it is
//! removed only when the channel says the far end has it (MQTT PUBACK, HTTP 2xx). Delivery is
//! at least once: a receiver may see a record twice and should dedupe on its `id` and `seq`.
//! Bounded: past [`MAX_OUTBOX_RECORDS`] the oldest *event* is dropped (logged); alerts are
//! never dropped. A record that cannot be parsed is moved aside as `<name>.corrupt`.
//! Failures are [`OutboxError`]s naming the path.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Most records kept per outbox (a month of a busy log is far less).
pub const MAX_OUTBOX_RECORDS: usize = 10_000;
/// Largest record file read back.
pub const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// Why an outbox operation failed; names the directory or file.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// Creating, listing, writing, syncing, renaming or removing a file failed.
    #[error("outbox {path}: {action}")]
    Io {
        /// The outbox directory or record file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A record cannot be serialized to JSON.
    #[error("outbox {path}: cannot encode the record")]
    Encode {
        /// The outbox directory.
        path: PathBuf,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// [`MAX_OUTBOX_RECORDS`] are waiting and all are alerts, so none can be dropped.
    #[error("outbox {path}: full of alerts ({MAX_OUTBOX_RECORDS} records)")]
    Full {
        /// The outbox directory.
        path: PathBuf,
    },
}

/// How much a record matters when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Never dropped.
    Alert,
    /// Dropped oldest-first when the outbox is full.
    Event,
}

impl Priority {
    fn tag(self) -> char {
        match self {
            Priority::Alert => 'a',
            Priority::Event => 'e',
        }
    }
}

#[derive(Debug)]
struct Index {
    next_seq: u64,
    records: BTreeMap<u64, Priority>,
}

/// One outbox directory. Shared by the monitor (push) and one channel thread (peek, remove).
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    index: Mutex<Index>,
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> OutboxError {
    let path = path.to_path_buf();
    move |source| OutboxError::Io {
        path,
        action,
        source,
    }
}

/// Creates `dir` (and parents) with mode 0700 where it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Options that create a file 0600.
pub fn private_file_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// fsyncs a directory so that a rename or unlink in it is on disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parse_name(name: &str) -> Option<(u64, Priority)> {
    let stem = name.strip_suffix(".json")?;
    let (seq, tag) = stem.split_once('-')?;
    let priority = match tag {
        "a" => Priority::Alert,
        "e" => Priority::Event,
        _ => return None,
    };
    Some((seq.parse().ok()?, priority))
}

impl Outbox {
    /// Opens (creating) the outbox in `dir` and indexes the records already there.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        create_private_dir(dir).map_err(io(dir, "cannot create the directory"))?;
        let mut records = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir, "cannot list the directory"))? {
            let entry = entry.map_err(io(dir, "cannot list the directory"))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                // A push that crashed before its rename: never confirmed to the caller.
                let _ = std::fs::remove_file(entry.path());
            } else if let Some((seq, priority)) = parse_name(&name) {
                records.insert(seq, priority);
            }
        }
        let next_seq = records.keys().next_back().map_or(1, |s| s + 1);
        if !records.is_empty() {
            log::info!(
                "outbox {}: {} undelivered record(s) from before",
                dir.display(),
                records.len()
            );
        }
        Ok(Outbox {
            dir: dir.to_path_buf(),
            index: Mutex::new(Index { next_seq, records }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock cannot leave the index half-updated in a way that
        // matters (the files are the truth), so a poisoned lock is used as it is.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path_of(&self, seq: u64, priority: Priority) -> PathBuf {
        self.dir.join(format!("{seq:020}-{}.json", priority.tag()))
    }

    /// The outbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no record is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `record` durably; returns its sequence number once it is on disk.
    pub fn push(&self, record: &serde_json::Value, priority: Priority) -> Result<u64, OutboxError> {
        let bytes = serde_json::to_vec(record).map_err(|source| OutboxError::Encode {
            path: self.dir.clone(),
            source,
        })?;
        let mut index = self.lock();
        if index.records.len() >= MAX_OUTBOX_RECORDS {
            let oldest_event = index
                .records
                .iter()
                .find(|(_, p)| **p == Priority::Event)
                .map(|(s, _)| *s);
            match oldest_event {
                Some(seq) => {
                    let path = self.path_of(seq, Priority::Event);
                    let _ = std::fs::remove_file(&path);
                    index.records.remove(&seq);
                    log::warn!(
                        "outbox {}: full; dropped the oldest event record",
                        self.dir.display()
                    );
                }
                None if priority == Priority::Event => {
                    log::warn!(
                        "outbox {}: full of alerts; an event record is not queued",
                        self.dir.display()
                    );
                    return Err(OutboxError::Full {
                        path: self.dir.clone(),
                    });
                }
                None => {} // an alert is queued even past the bound
            }
        }
        let seq = index.next_seq;
        let path = self.path_of(seq, priority);
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = private_file_options()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&self.dir)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&path, "cannot write the record")(e));
        }
        index.next_seq += 1;
        index.records.insert(seq, priority);
        Ok(seq)
    }

    /// The oldest record, if any. An unreadable record is moved aside and the next one tried.
    pub fn oldest(&self) -> Result<Option<(u64, serde_json::Value)>, OutboxError> {
        loop {
            let (seq, priority) = {
                let index = self.lock();
                match index.records.iter().next() {
                    Some((s, p)) => (*s, *p),
                    None => return Ok(None),
                }
            };
            let path = self.path_of(seq, priority);
            let parsed = std::fs::metadata(&path)
                .and_then(|m| {
                    if m.len() > MAX_RECORD_BYTES {
                        Err(std::io::Error::other("record too large"))
                    } else {
                        std::fs::read(&path)
                    }
                })
                .and_then(|b| serde_json::from_slice(&b).map_err(std::io::Error::other));
            match parsed {
                Ok(value) => return Ok(Some((seq, value))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    log::warn!("outbox {}: record {seq} vanished", self.dir.display());
                    self.lock().records.remove(&seq);
                }
                Err(e) => {
                    log::error!(
                        "outbox {}: record {seq} is unreadable ({e}); moved aside",
                        self.dir.display()
                    );
                    let _ = std::fs::rename(&path, path.with_extension("json.corrupt"));
                    self.lock().records.remove(&seq);
                }
            }
        }
    }

    /// Forgets a delivered record (deletes its file, durably).
    pub fn remove(&self, seq: u64) -> Result<(), OutboxError> {
        let mut index = self.lock();
        let Some(priority) = index.records.get(&seq).copied() else {
            return Ok(());
        };
        let path = self.path_of(seq, priority);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, "cannot delete the delivered record")(e)),
        }
        index.records.remove(&seq);
        sync_dir(&self.dir).map_err(io(&self.dir, "cannot sync the directory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_survive_reopen_in_order_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mqtt");
        {
            let o = Outbox::open(&path).unwrap();
            assert!(o.oldest().unwrap().is_none());
            o.push(&json!({"n": 1}), Priority::Alert).unwrap();
            o.push(&json!({"n": 2}), Priority::Event).unwrap();
            o.push(&json!({"n": 3}), Priority::Alert).unwrap();
        } // dropped: as if the process stopped
        let o = Outbox::open(&path).unwrap();
        assert_eq!(o.len(), 3);
        let (seq, v) = o.oldest().unwrap().unwrap();
        assert_eq!(v, json!({"n": 1}));
        o.remove(seq).unwrap();
        let (seq2, v) = o.oldest().unwrap().unwrap();
        assert_eq!(v, json!({"n": 2}));
        assert!(seq2 > seq);
        // New records go after the old ones even after a reopen.
        let s4 = o.push(&json!({"n": 4}), Priority::Event).unwrap();
        assert!(s4 > seq2);
        drop(o);
        let o = Outbox::open(&path).unwrap();
        let all: Vec<_> = std::iter::from_fn(|| {
            let (s, v) = o.oldest().unwrap()?;
            o.remove(s).unwrap();
            Some(v["n"].as_i64().unwrap())
        })
        .collect();
        assert_eq!(all, vec![2, 3, 4]);
        assert!(o.is_empty());
        assert_eq!(std::fs::read_dir(&path).unwrap().count(), 0);
    }

    #[test]
    fn files_are_private_and_leftovers_handled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let o = Outbox::open(&path).unwrap();
        o.push(&json!({"a": 1}), Priority::Alert).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o700);
            for e in std::fs::read_dir(&path).unwrap() {
                assert_eq!(mode(&e.unwrap().path()), 0o600);
            }
        }
        drop(o);
        std::fs::write(path.join("00000000000000000007-a.json.tmp"), "{").unwrap();
        std::fs::write(path.join("00000000000000000005-e.json"), "not json").unwrap();
        let o = Outbox::open(&path).unwrap();
        assert_eq!(o.len(), 2);
        let (_, v) = o.oldest().unwrap().unwrap();
        assert_eq!(v, json!({"a": 1}));
        let (s, _) = o.oldest().unwrap().unwrap();
        o.remove(s).unwrap();
        assert!(
            o.oldest().unwrap().is_none(),
            "the corrupt one is set aside"
        );
        assert!(path.join("00000000000000000005-e.json.corrupt").exists());
        assert!(!path.join("00000000000000000007-a.json.tmp").exists());
    }

    #[test]
    fn full_outbox_drops_events_never_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::open(dir.path()).unwrap();
        {
            // Fill the index without writing 10,000 files.
            let mut idx = o.lock();
            for s in 1..=MAX_OUTBOX_RECORDS as u64 {
                idx.records.insert(s, Priority::Alert);
            }
            idx.records.insert(1, Priority::Event);
            idx.next_seq = MAX_OUTBOX_RECORDS as u64 + 1;
        }
        o.push(&json!({}), Priority::Alert).unwrap();
        assert!(!o.lock().records.contains_key(&1), "oldest event dropped");
        assert!(matches!(
            o.push(&json!({}), Priority::Event),
            Err(OutboxError::Full { .. })
        ));
        o.push(&json!({}), Priority::Alert).unwrap();
    }
}
