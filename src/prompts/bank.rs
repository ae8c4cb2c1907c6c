//! Prompt banks: precomputed, calibrated text embeddings of a prompt set, as safetensors.
//!
//! A bank is made on a host by `embed-prompts` and only loaded on the device. It holds one
//! L2-normalized row per label (the mean of its templates' embeddings), the label's
//! calibration (the mean and standard deviation of its cosine on reference photos that do not
//! show it, and the cosine threshold derived from them), and metadata: labels, categories,
//! priorities, sentences, and the id and fingerprint of the model that made it. A bank made
//! with another model is refused, naming both. Failures are [`BankError`]s naming the file.

use crate::file_error::FileError;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::decide::LabelInfo;
use crate::model::ModelIdentity;
use crate::types::Category;

/// The value of the `format` metadata key.
pub const BANK_FORMAT: &str = "clipsight-bank/2";
/// The previous format: no aliases or validation; its labels load as validated.
pub const BANK_FORMAT_V1: &str = "clipsight-bank/1";
/// Banks larger than this are refused before they are read (a bank of 10,000 labels at
/// dimension 1024 is 40 MB).
pub const MAX_BANK_BYTES: u64 = 256 * 1024 * 1024;

/// Why a bank cannot be read, written or used.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    /// The file cannot be read or written.
    #[error(transparent)]
    Io(#[from] FileError),
    /// The file is not a bank, or a broken one.
    #[error("{path}: not a clipsight prompt bank: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The bank was made with another model than the one loaded.
    #[error(
        "{path}: this bank was made with model {bank}, but the loaded model is {model}; \
         re-embed the prompts with `clipsight embed-prompts --model <this model>`"
    )]
    ModelMismatch {
        /// The bank file.
        path: PathBuf,
        /// The model it was made with.
        bank: ModelIdentity,
        /// The model loaded.
        model: ModelIdentity,
    },
}

/// One label of a bank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BankEntry {
    /// The label.
    pub label: String,
    /// What kind of thing it is.
    pub category: Category,
    /// Its urgency among labels of the same kind (0–255).
    pub priority: u8,
    /// The sentence spoken when it comes into view.
    pub say: String,
    /// The cosine above which the label counts as present.
    pub threshold: f32,
    /// Mean cosine on calibration photos that do not show the label.
    pub neg_mean: f32,
    /// Standard deviation of that cosine (> 0).
    pub neg_std: f32,
    /// Other names of the label in calibration labels (lower-case comparison).
    pub aliases: Vec<String>,
    /// What the calibration photos showed of the label.
    pub calibration: Evidence,
    /// Where its row came from: text prompts, or photos a user taught.
    pub source: Source,
    /// Rows of the bank's vocabulary that calibration found among the best matches of photos
    /// showing the label (learned gate entries, [`crate::matching::learned_gate`]): the gate
    /// passes on them as on the entries its text is close to. Empty for taught labels.
    pub gate: Vec<u32>,
}

/// Where a bank row came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Source {
    /// The mean embedding of the label's text prompts (`embed-prompts`).
    #[default]
    Text,
    /// The mean image embedding of photos or camera frames of the user's own thing
    /// ([`crate::prompts::teach`]).
    Image {
        /// How many photos or frames were averaged.
        shots: u32,
        /// Copies of the photos kept for `teach --rebuild` (paths relative to the bank's
        /// folder); empty unless the user asked to keep them.
        photos: Vec<String>,
    },
}

impl Source {
    /// `"text"` or `"image"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Source::Text => "text",
            Source::Image { .. } => "image",
        }
    }
}

/// What calibration found for one label: how many photos showed it, and whether its
/// threshold reached the target precision ([`crate::prompts::calibrate::PrecisionRule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The threshold was validated on enough photos showing the label.
    pub validated: bool,
    /// Calibration photos showing the label.
    pub positives: u32,
    /// Of those, at or above the threshold.
    pub hits: u32,
    /// Calibration photos without the label at or above the threshold.
    pub false_hits: u32,
}

impl Evidence {
    /// What a bank of the first format knew: nothing, so every label counts as validated.
    pub const UNKNOWN: Evidence = Evidence {
        validated: true,
        positives: 0,
        hits: 0,
        false_hits: 0,
    };

    /// From a calibration's statistics.
    pub fn of(s: &crate::prompts::calibrate::LabelStats) -> Evidence {
        let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Evidence {
            validated: s.validated,
            positives: n(s.positives),
            hits: n(s.hits),
            false_hits: n(s.false_hits),
        }
    }
}

impl BankEntry {
    /// The calibrated score: how many standard deviations above the negatives' mean.
    pub fn z(&self, cosine: f32) -> f32 {
        (cosine - self.neg_mean) / self.neg_std
    }

    /// The threshold in z units.
    pub fn z_threshold(&self) -> f32 {
        self.z(self.threshold)
    }
}

/// A loaded bank.
#[derive(Debug, Clone, PartialEq)]
pub struct Bank {
    /// The prompt set's name.
    pub name: String,
    /// The model the bank was made with; a bank is refused by another.
    pub model: ModelIdentity,
    /// How the thresholds were calibrated (free text, for people).
    pub calibration: String,
    /// Its labels, in order.
    pub entries: Vec<BankEntry>,
    dim: usize,
    embeddings: Vec<f32>,
    /// A broad vocabulary embedded by the same text tower (rows of `dim`), for matching's
    /// gate ([`crate::matching::Matcher`]); stored as f16.
    vocabulary: Option<Vec<f32>>,
}

#[derive(Serialize, Deserialize)]
struct EntryMeta {
    label: String,
    category: Category,
    priority: u8,
    say: String,
    #[serde(default)]
    aliases: Vec<String>,
    /// Absent in the first format.
    #[serde(default)]
    calibration: Option<Evidence>,
    /// `text` or `image`; banks written before taught labels existed have none (text).
    #[serde(default)]
    source: SourceKind,
    /// Image rows: the photos or frames averaged.
    #[serde(default, skip_serializing_if = "is_zero")]
    shots: u32,
    /// Image rows: kept photos, relative to the bank's folder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    photos: Vec<String>,
    /// Learned gate entries: vocabulary rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    gate: Vec<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SourceKind {
    #[default]
    Text,
    Image,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Bank {
    /// Builds a bank; `embeddings` holds `entries.len()` rows of `dim` unit-length values.
    pub fn new(
        name: String,
        model: ModelIdentity,
        calibration: String,
        entries: Vec<BankEntry>,
        dim: usize,
        embeddings: Vec<f32>,
    ) -> Result<Self, String> {
        if dim == 0 || embeddings.len() != entries.len() * dim {
            return Err(format!(
                "embeddings: expected {} × {dim} values, found {}",
                entries.len(),
                embeddings.len()
            ));
        }
        if entries.is_empty() {
            return Err("the bank has no labels".into());
        }
        if embeddings.iter().any(|v| !v.is_finite()) {
            return Err("embeddings: non-finite values".into());
        }
        for e in &entries {
            let valid = e.threshold.is_finite()
                && e.neg_mean.is_finite()
                && e.neg_std.is_finite()
                && e.neg_std > 0.0;
            if !valid {
                return Err(format!("label {:?}: invalid calibration", e.label));
            }
        }
        Ok(Bank {
            name,
            model,
            calibration,
            entries,
            dim,
            embeddings,
            vocabulary: None,
        })
    }

    /// Adds a gate vocabulary: `rows` unit-length text embeddings of this bank's model.
    pub fn with_vocabulary(mut self, rows: Vec<f32>) -> Result<Self, String> {
        if rows.is_empty()
            || !rows.len().is_multiple_of(self.dim)
            || rows.iter().any(|v| !v.is_finite())
        {
            return Err(format!(
                "vocabulary: expected rows of {} finite values, found {} values",
                self.dim,
                rows.len()
            ));
        }
        self.vocabulary = Some(rows);
        self.check_gate()?;
        Ok(self)
    }

    /// Every learned gate entry names a row of the vocabulary.
    fn check_gate(&self) -> Result<(), String> {
        let rows = self.vocabulary.as_ref().map_or(0, |v| v.len() / self.dim);
        match self
            .entries
            .iter()
            .find(|e| e.gate.iter().any(|&g| g as usize >= rows))
        {
            Some(e) => Err(format!(
                "label {:?}: learned gate entries {:?} beyond the {rows} vocabulary rows",
                e.label, e.gate
            )),
            None => Ok(()),
        }
    }

    /// The gate vocabulary's rows (each of [`Bank::dim`] values), if the bank has one.
    pub fn vocabulary(&self) -> Option<&[f32]> {
        self.vocabulary.as_deref()
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no labels (never true for a loaded bank).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The embedding size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The unit-length text embedding of label `i`.
    pub fn embedding(&self, i: usize) -> &[f32] {
        &self.embeddings[i * self.dim..(i + 1) * self.dim]
    }

    /// Cosine of a unit-length image embedding with every label, into `out`.
    pub fn cosines(&self, image: &[f32], out: &mut [f32]) {
        for (o, row) in out.iter_mut().zip(self.embeddings.chunks_exact(self.dim)) {
            *o = row.iter().zip(image).map(|(a, b)| a * b).sum();
        }
    }

    /// The bank as the bytes of a safetensors file (`path` names it in errors).
    fn to_bytes(&self, path: &Path) -> Result<Vec<u8>, BankError> {
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let emb = bytes(&self.embeddings);
        let thr = bytes(&self.entries.iter().map(|e| e.threshold).collect::<Vec<_>>());
        let mean = bytes(&self.entries.iter().map(|e| e.neg_mean).collect::<Vec<_>>());
        let std = bytes(&self.entries.iter().map(|e| e.neg_std).collect::<Vec<_>>());
        let n = self.entries.len();
        fn view(data: &[u8], shape: Vec<usize>) -> Result<TensorView<'_>, String> {
            TensorView::new(Dtype::F32, shape, data).map_err(|e| e.to_string())
        }
        let bad = |message: String| BankError::Format {
            path: path.to_path_buf(),
            message,
        };
        let vocab: Vec<u8> = self
            .vocabulary
            .iter()
            .flatten()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let mut tensors = vec![
            ("embeddings", view(&emb, vec![n, self.dim]).map_err(bad)?),
            ("threshold", view(&thr, vec![n]).map_err(bad)?),
            ("neg_mean", view(&mean, vec![n]).map_err(bad)?),
            ("neg_std", view(&std, vec![n]).map_err(bad)?),
        ];
        if !vocab.is_empty() {
            let rows = vocab.len() / 2 / self.dim;
            let t = TensorView::new(Dtype::F16, vec![rows, self.dim], &vocab)
                .map_err(|e| bad(e.to_string()))?;
            tensors.push(("vocabulary", t));
        }
        let entries: Vec<EntryMeta> = self
            .entries
            .iter()
            .map(|e| EntryMeta {
                label: e.label.clone(),
                category: e.category,
                priority: e.priority,
                say: e.say.clone(),
                aliases: e.aliases.clone(),
                calibration: Some(e.calibration),
                source: match e.source {
                    Source::Text => SourceKind::Text,
                    Source::Image { .. } => SourceKind::Image,
                },
                shots: match e.source {
                    Source::Image { shots, .. } => shots,
                    Source::Text => 0,
                },
                photos: match &e.source {
                    Source::Image { photos, .. } => photos.clone(),
                    Source::Text => Vec::new(),
                },
                gate: e.gate.clone(),
            })
            .collect();
        let mut meta = HashMap::new();
        meta.insert("format".to_string(), BANK_FORMAT.to_string());
        meta.insert("name".to_string(), self.name.clone());
        meta.insert("model_id".to_string(), self.model.id.clone());
        meta.insert(
            "model_fingerprint".to_string(),
            self.model.fingerprint.clone(),
        );
        meta.insert("calibration".to_string(), self.calibration.clone());
        meta.insert(
            "entries".to_string(),
            serde_json::to_string(&entries).unwrap_or_default(),
        );
        safetensors::serialize(tensors, &Some(meta)).map_err(|e| BankError::Format {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes the bank as safetensors.
    pub fn save(&self, path: &Path) -> Result<(), BankError> {
        let data = self.to_bytes(path)?;
        std::fs::write(path, data).map_err(FileError::writing(path))?;
        Ok(())
    }

    /// Writes the bank for its owner only (mode 0600) and atomically: to a temporary file
    /// beside `path`, synced, then renamed over it, so a power cut leaves the old bank or the
    /// new one, never half of one. The folder is created if needed. For personal banks.
    pub fn save_private(&self, path: &Path) -> Result<(), BankError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let data = self.to_bytes(path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(FileError::writing(dir))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            FileError::writing(path)(e)
        })?;
        Ok(())
    }

    /// This bank with `entry` and its unit-length `row`: in place of the label of the same
    /// name (compared case-insensitively), or added at the end.
    pub fn with_entry(mut self, entry: BankEntry, row: &[f32]) -> Result<Self, String> {
        if row.len() != self.dim || row.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "label {:?}: expected {} finite values, found {}",
                entry.label,
                self.dim,
                row.len()
            ));
        }
        match self.position(&entry.label) {
            Some(i) => {
                self.entries[i] = entry;
                self.embeddings[i * self.dim..(i + 1) * self.dim].copy_from_slice(row);
            }
            None => {
                self.entries.push(entry);
                self.embeddings.extend_from_slice(row);
            }
        }
        self.check_gate()?;
        Ok(self)
    }

    /// This bank without `label` (case-insensitive); `None` when that was its last label.
    pub fn without(mut self, label: &str) -> Option<Self> {
        if let Some(i) = self.position(label) {
            self.entries.remove(i);
            self.embeddings.drain(i * self.dim..(i + 1) * self.dim);
        }
        (!self.entries.is_empty()).then_some(self)
    }

    /// The index of `label` (case-insensitive).
    pub fn position(&self, label: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.label.eq_ignore_ascii_case(label.trim()))
    }

    /// Reads a bank file.
    pub fn load(path: &Path) -> Result<Self, BankError> {
        let io = FileError::reading(path);
        let bad = |message: String| BankError::Format {
            path: path.to_path_buf(),
            message,
        };
        let size = std::fs::metadata(path).map_err(&io)?.len();
        if size > MAX_BANK_BYTES {
            return Err(bad(format!(
                "{size} bytes is over the limit of {MAX_BANK_BYTES}"
            )));
        }
        let buf = std::fs::read(path).map_err(io)?;
        Self::from_bytes(&buf).map_err(bad)
    }

    /// Parses a bank from the bytes of a file (what [`Bank::load`] reads); the error says
    /// what is wrong without the path. Public for the fuzz targets.
    pub fn from_bytes(buf: &[u8]) -> Result<Self, String> {
        let (_, header) = SafeTensors::read_metadata(buf).map_err(|e| e.to_string())?;
        let meta = header
            .metadata()
            .as_ref()
            .ok_or("no metadata (not made by embed-prompts)")?;
        let get = |key: &str| {
            meta.get(key)
                .cloned()
                .ok_or_else(|| format!("metadata key {key:?} is missing"))
        };
        let format = get("format")?;
        if format != BANK_FORMAT && format != BANK_FORMAT_V1 {
            return Err(format!("format: expected {BANK_FORMAT}, found {format:?}"));
        }
        let entries: Vec<EntryMeta> = serde_json::from_str(&get("entries")?)
            .map_err(|e| format!("metadata \"entries\": {e}"))?;
        let tensors = SafeTensors::deserialize(buf).map_err(|e| e.to_string())?;
        let read = |name: &str, shape_ok: &dyn Fn(&[usize]) -> bool| -> Result<Vec<f32>, String> {
            let t = tensors
                .tensor(name)
                .map_err(|_| format!("tensor {name:?} is missing"))?;
            if t.dtype() != Dtype::F32 {
                return Err(format!(
                    "tensor {name:?}: expected F32, found {:?}",
                    t.dtype()
                ));
            }
            if !shape_ok(t.shape()) {
                return Err(format!(
                    "tensor {name:?}: unexpected shape {:?} for {} labels",
                    t.shape(),
                    entries.len()
                ));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let n = entries.len();
        let emb_shape = tensors
            .tensor("embeddings")
            .map_err(|_| "tensor \"embeddings\" is missing".to_string())?
            .shape()
            .to_vec();
        let dim = match emb_shape[..] {
            [rows, dim] if rows == n && dim > 0 => dim,
            _ => {
                return Err(format!(
                    "tensor \"embeddings\": expected [{n}, dim], found {emb_shape:?}"
                ))
            }
        };
        let embeddings = read("embeddings", &|s| s == [n, dim])?;
        let vec1 = |s: &[usize]| s == [n];
        let thr = read("threshold", &vec1)?;
        let mean = read("neg_mean", &vec1)?;
        let std = read("neg_std", &vec1)?;
        let entries = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| BankEntry {
                label: e.label,
                category: e.category,
                priority: e.priority,
                say: e.say,
                aliases: e.aliases,
                threshold: thr[i],
                neg_mean: mean[i],
                neg_std: std[i],
                calibration: e.calibration.unwrap_or(Evidence::UNKNOWN),
                source: match e.source {
                    SourceKind::Text => Source::Text,
                    SourceKind::Image => Source::Image {
                        shots: e.shots,
                        photos: e.photos,
                    },
                },
                gate: e.gate,
            })
            .collect();
        let model = ModelIdentity {
            id: get("model_id")?,
            fingerprint: get("model_fingerprint")?,
        };
        let bank = Bank::new(
            meta.get("name").cloned().unwrap_or_default(),
            model,
            meta.get("calibration").cloned().unwrap_or_default(),
            entries,
            dim,
            embeddings,
        )?;
        match tensors.tensor("vocabulary") {
            Err(_) => bank.check_gate().map(|()| bank),
            Ok(t) => {
                if t.dtype() != Dtype::F16 || t.shape().len() != 2 || t.shape()[1] != dim {
                    return Err(format!(
                        "tensor \"vocabulary\": expected F16 [rows, {dim}], found {:?} {:?}",
                        t.dtype(),
                        t.shape()
                    ));
                }
                let rows = t
                    .data()
                    .chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect();
                bank.with_vocabulary(rows)
            }
        }
    }

    /// Loads a bank and refuses it unless it was made with `model`.
    pub fn load_for(path: &Path, model: &ModelIdentity) -> Result<Self, BankError> {
        let bank = Self::load(path)?;
        if &bank.model != model {
            return Err(BankError::ModelMismatch {
                path: path.to_path_buf(),
                bank: bank.model,
                model: model.clone(),
            });
        }
        Ok(bank)
    }
}

/// The decision stage's view of the loaded banks' labels.
impl LabelInfo {
    /// All labels of some banks, in bank order.
    pub fn from_banks(banks: &[Bank]) -> Vec<LabelInfo> {
        banks
            .iter()
            .flat_map(|b| b.entries.iter())
            .map(|e| LabelInfo {
                label: e.label.clone(),
                category: e.category,
                priority: e.priority,
                say: e.say.clone(),
                z_threshold: e.z_threshold(),
                validated: e.calibration.validated,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(id: &str) -> ModelIdentity {
        ModelIdentity {
            id: id.into(),
            fingerprint: format!("{id:0>64}"),
        }
    }

    fn sample() -> Bank {
        let entry = |label: &str, category| BankEntry {
            label: label.into(),
            category,
            priority: 7,
            say: format!("{label}!"),
            threshold: 0.3,
            neg_mean: 0.1,
            neg_std: 0.05,
            aliases: Vec::new(),
            calibration: Evidence::UNKNOWN,
            source: Source::Text,
            gate: Vec::new(),
        };
        Bank::new(
            "test".into(),
            identity("m1"),
            "z = 2".into(),
            vec![
                entry("dog", Category::Object),
                entry("fire", Category::Hazard),
            ],
            2,
            vec![1.0, 0.0, 0.0, 1.0],
        )
        .unwrap()
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.safetensors");
        let bank = sample();
        bank.save(&path).unwrap();
        let back = Bank::load_for(&path, &identity("m1")).unwrap();
        assert_eq!(back, bank);
        let mut out = [0.0; 2];
        back.cosines(&[0.6, 0.8], &mut out);
        assert_eq!(out, [0.6, 0.8]);
        assert!((back.entries[0].z_threshold() - 4.0).abs() < 1e-5);
    }

    /// Learned gate entries survive a file, and ones beyond the vocabulary are refused: at
    /// load, and when a bank gains its vocabulary or an entry.
    #[test]
    fn learned_gate_entries_round_trip_and_must_name_vocabulary_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.safetensors");
        let mut bank = sample()
            .with_vocabulary(vec![1.0, 0.0, 0.0, 1.0, 0.5, 0.5])
            .unwrap();
        bank.entries[0].gate = vec![0, 2];
        bank.save(&path).unwrap();
        let back = Bank::load(&path).unwrap();
        assert_eq!(back.entries[0].gate, [0, 2]);
        assert!(back.entries[1].gate.is_empty());
        assert_eq!(back, bank);
        // Row 3 of a 3-row vocabulary, or any row without one.
        bank.entries[1].gate = vec![3];
        bank.save(&path).unwrap();
        let err = Bank::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("fire") && err.contains("learned gate"),
            "{err}"
        );
        let mut bare = sample();
        bare.entries[0].gate = vec![0];
        bare.save(&path).unwrap();
        assert!(Bank::load(&path).is_err());
        assert!(bare.clone().with_vocabulary(vec![1.0, 0.0]).is_ok());
        let mut entry = sample().entries[1].clone();
        entry.gate = vec![5];
        assert!(sample().with_entry(entry, &[0.0, 1.0]).is_err());
    }

    #[test]
    fn another_model_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.safetensors");
        sample().save(&path).unwrap();
        let msg = Bank::load_for(&path, &identity("m2"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("m1") && msg.contains("m2"), "{msg}");
    }

    #[test]
    fn garbage_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.safetensors");
        for junk in [
            &b""[..],
            b"garbage garbage garbage",
            &[0xff; 64],
            b"\x08\0\0\0\0\0\0\0{\"a\":1}",
        ] {
            std::fs::write(&path, junk).unwrap();
            let err = Bank::load(&path).unwrap_err();
            assert!(matches!(err, BankError::Format { .. }), "{err}");
            assert!(err.to_string().contains("junk.safetensors"));
        }
    }
}
