//! `embed-prompts`: a prompt set + a model + calibration photos → a calibrated prompt bank.
//!
//! Each label's templates are embedded in batches, averaged and re-normalized (prompt
//! ensembling, as in the CLIP paper); the calibration photos are embedded once; every label
//! gets its threshold from [`crate::prompts::calibrate`]. Progress is reported through a callback so
//! the binary can draw a progress bar. Failures name the prompt, photo or model file.

use crate::capture::decode::{decode_file, DecodeError, DecodeLimits};
use crate::model::Bundle;
use crate::prompts::bank::{Bank, BankEntry, Evidence};
use crate::prompts::calibrate::{
    calibrate, CalibrationError, LabelStats, PrecisionRule, Reference,
};
use crate::prompts::text_encoder::TractTextEncoder;
use crate::prompts::{PromptSet, DEFAULT_TEMPLATES};
use crate::vision::encoder::EncodeError;
use crate::vision::{EmbedError, ImageEmbedder};

/// Why a bank cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The text or image tower failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A photo (calibration or taught) cannot be decoded.
    #[error("photo: {0}")]
    Decode(#[from] DecodeError),
    /// A photo (calibration or taught) cannot be embedded.
    #[error("photo {path}: {source}")]
    Embed {
        /// The photo.
        path: String,
        /// Why.
        #[source]
        source: EmbedError,
    },
    /// The calibration photos cannot calibrate a label.
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    /// The result is not a valid bank.
    #[error("cannot build the bank: {0}")]
    Bank(String),
    /// The vocabulary file cannot be read or is empty.
    #[error("vocabulary: {0}")]
    Vocabulary(String),
}

/// Which part of the work a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Embedding the prompt set's templates.
    Prompts,
    /// Embedding the gate vocabulary.
    Vocabulary,
    /// Embedding the calibration photos.
    Photos,
}

/// The prompt texts embedded per encoder call between progress reports.
const TEXT_CHUNK: usize = 64;

/// The per-label mean of the template embeddings, re-normalized.
fn ensemble(rows: &[Vec<f32>], dim: usize) -> Vec<f32> {
    let mut mean = vec![0f32; dim];
    for r in rows {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v;
        }
    }
    // Unit text embeddings never average to zero; a zero row would score 0 everywhere.
    crate::matching::normalize(&mut mean);
    mean
}

/// Reads a vocabulary file (one name per line; `#` starts a comment line).
pub fn read_vocabulary(path: &std::path::Path) -> Result<Vec<String>, BuildError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BuildError::Vocabulary(format!("{}: {e}", path.display())))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(BuildError::Vocabulary(format!(
            "{}: no names",
            path.display()
        )));
    }
    Ok(names)
}

/// Embeds each entry's texts and averages them (prompt ensembling): one unit row per entry.
fn embed_entries(
    text: &mut TractTextEncoder,
    entries: &[Vec<String>],
    dim: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<f32>>, BuildError> {
    let all: Vec<&str> = entries
        .iter()
        .flat_map(|t| t.iter().map(String::as_str))
        .collect();
    let mut rows = Vec::with_capacity(all.len());
    for chunk in all.chunks(TEXT_CHUNK) {
        rows.extend(text.embed(chunk)?);
        progress(rows.len(), all.len());
    }
    let mut out = Vec::with_capacity(entries.len());
    let mut at = 0;
    for t in entries {
        out.push(ensemble(&rows[at..at + t.len()], dim));
        at += t.len();
    }
    Ok(out)
}

/// Builds a bank; with `vocabulary` (names, embedded with the default templates), the bank
/// carries matching's gate. `progress(phase, done, total)` is called as work completes.
#[allow(clippy::too_many_arguments)]
pub fn build_bank(
    bundle: &Bundle,
    text: &mut TractTextEncoder,
    images: &mut ImageEmbedder,
    set: &PromptSet,
    vocabulary: &[String],
    refs: &[Reference],
    rule: &PrecisionRule,
    progress: &mut dyn FnMut(Phase, usize, usize),
) -> Result<(Bank, Vec<LabelStats>), BuildError> {
    let dim = bundle.manifest.embedding.dim;
    let texts: Vec<Vec<String>> = set.prompts.iter().map(|p| p.texts.clone()).collect();
    let label_emb = embed_entries(text, &texts, dim, &mut |d, n| {
        progress(Phase::Prompts, d, n)
    })?;
    let vocab_texts: Vec<Vec<String>> = vocabulary
        .iter()
        .map(|name| {
            DEFAULT_TEMPLATES
                .iter()
                .map(|t| t.replace("{}", name))
                .collect()
        })
        .collect();
    let vocab_emb = embed_entries(text, &vocab_texts, dim, &mut |d, n| {
        progress(Phase::Vocabulary, d, n)
    })?;
    let paths: Vec<&std::path::Path> = refs.iter().map(|r| r.path.as_path()).collect();
    let photo_emb = embed_photos(images, &paths, &mut |d, n| progress(Phase::Photos, d, n))?;
    let labels: Vec<(&str, &[String])> = set
        .prompts
        .iter()
        .map(|p| (p.label.as_str(), p.aliases.as_slice()))
        .collect();
    let stats = calibrate(&labels, &label_emb, refs, &photo_emb, rule)?;
    let entries = set
        .prompts
        .iter()
        .zip(&stats)
        .map(|(p, s)| BankEntry {
            label: p.label.clone(),
            category: p.category,
            priority: p.priority,
            say: p.say.clone(),
            aliases: p.aliases.clone(),
            threshold: s.threshold,
            neg_mean: s.neg_mean,
            neg_std: s.neg_std,
            calibration: Evidence::of(s),
            source: Default::default(),
            gate: Vec::new(),
        })
        .collect();
    let calibration = rule.describe(refs.len());
    let bank = Bank::new(
        set.name.clone(),
        bundle.identity(),
        calibration,
        entries,
        dim,
        label_emb.concat(),
    )
    .map_err(BuildError::Bank)?;
    let mut bank = if vocab_emb.is_empty() {
        bank
    } else {
        bank.with_vocabulary(vocab_emb.concat())
            .map_err(BuildError::Bank)?
    };
    crate::prompts::calibrate::learn_gate(&mut bank, refs, &photo_emb, rule);
    Ok((bank, stats))
}

/// The unit-length image embeddings of photo files, in order; `progress(done, total)` after
/// each. A photo that cannot be decoded or embedded is an error naming it.
pub fn embed_photos(
    images: &mut ImageEmbedder,
    paths: &[&std::path::Path],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Vec<f32>>, BuildError> {
    let mut out = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        let img = decode_file(path, DecodeLimits::default())?;
        let e = images
            .embed((&img).into())
            .map_err(|source| BuildError::Embed {
                path: path.display().to_string(),
                source,
            })?;
        out.push(e.to_vec());
        progress(i + 1, paths.len());
    }
    Ok(out)
}
