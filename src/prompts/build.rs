//! `embed-prompts`: a prompt set + a model + calibration photos → a calibrated prompt bank.
//!
//! Each label's templates are embedded in batches, averaged and re-normalized (prompt
//! ensembling, as in the CLIP paper); the calibration photos are embedded once; every label
//! gets its threshold from [`crate::prompts::calibrate`]. Progress is reported through a callback so
//! the binary can draw a progress bar. Failures name the prompt, photo or model file.

use crate::capture::decode::{decode_file, DecodeError, DecodeLimits};
use crate::model::Bundle;
use crate::prompts::bank::{Bank, BankEntry};
use crate::prompts::calibrate::{calibrate, CalibrationError, LabelStats, Reference};
use crate::prompts::text_encoder::TractTextEncoder;
use crate::prompts::PromptSet;
use crate::vision::encoder::EncodeError;
use crate::vision::{EmbedError, ImageEmbedder};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("calibration photo: {0}")]
    Decode(#[from] DecodeError),
    #[error("calibration photo {path}: {source}")]
    Embed {
        path: String,
        #[source]
        source: EmbedError,
    },
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    #[error("cannot build the bank: {0}")]
    Bank(String),
}

/// Which part of the work a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Prompts,
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
    crate::matching::normalize(&mut mean);
    mean
}

/// Builds a bank. `progress(phase, done, total)` is called as work completes.
pub fn build_bank(
    bundle: &Bundle,
    text: &mut TractTextEncoder,
    images: &mut ImageEmbedder,
    set: &PromptSet,
    refs: &[Reference],
    z: f32,
    progress: &mut dyn FnMut(Phase, usize, usize),
) -> Result<(Bank, Vec<LabelStats>), BuildError> {
    let dim = bundle.manifest.embedding.dim;
    let all: Vec<&str> = set
        .prompts
        .iter()
        .flat_map(|p| p.texts.iter().map(String::as_str))
        .collect();
    let mut rows = Vec::with_capacity(all.len());
    for chunk in all.chunks(TEXT_CHUNK) {
        rows.extend(text.embed(chunk)?);
        progress(Phase::Prompts, rows.len(), all.len());
    }
    let mut label_emb = Vec::with_capacity(set.prompts.len());
    let mut at = 0;
    for p in &set.prompts {
        label_emb.push(ensemble(&rows[at..at + p.texts.len()], dim));
        at += p.texts.len();
    }
    let mut photo_emb = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let img = decode_file(&r.path, DecodeLimits::default())?;
        let e = images
            .embed((&img).into())
            .map_err(|source| BuildError::Embed {
                path: r.path.display().to_string(),
                source,
            })?;
        photo_emb.push(e.to_vec());
        progress(Phase::Photos, i + 1, refs.len());
    }
    let stats = calibrate(&set.prompts, &label_emb, refs, &photo_emb, z)?;
    let entries = set
        .prompts
        .iter()
        .zip(&stats)
        .map(|(p, s)| BankEntry {
            label: p.label.clone(),
            category: p.category,
            priority: p.priority,
            say: p.say.clone(),
            threshold: s.threshold,
            neg_mean: s.neg_mean,
            neg_std: s.neg_std,
        })
        .collect();
    let calibration = format!(
        "threshold = mean + {z} × std of each label's cosine on the {} of {} calibration photos that do not show it",
        "negatives", refs.len()
    );
    let bank = Bank::new(
        set.name.clone(),
        bundle.identity(),
        calibration,
        entries,
        dim,
        label_emb.concat(),
    )
    .map_err(BuildError::Bank)?;
    Ok((bank, stats))
}
