//! The text tower of a bundle with its tokenizer, run with tract on the host: prompts →
//! unit-length text embeddings, in batches of the manifest's size. Used by `embed-prompts`;
//! the device only loads the banks it writes.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokenizers::{Tokenizer, TruncationParams};
use tract_onnx::prelude::*;

use crate::model::Bundle;
use crate::vision::encoder::{l2_normalize_into, Device, EncodeError};
use crate::vision::tract::{check_output, load_plan, Plan};

/// The text tower of a bundle with its tokenizer.
pub struct TractTextEncoder {
    path: PathBuf,
    tokenizer_path: PathBuf,
    plan: Plan,
    tokenizer: Tokenizer,
    batch: usize,
    ctx: usize,
    pad_id: u32,
    feed_mask: bool,
    feed_token_types: bool,
    dim: usize,
    load_time: Duration,
}

/// Token ids and attention mask of one prompt, padded to the context length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// Token ids, padded with the pad id to the context length.
    pub ids: Vec<i64>,
    /// 1 for a real token, 0 for padding.
    pub mask: Vec<i64>,
}

impl TractTextEncoder {
    /// Loads a bundle's text tower and tokenizer.
    pub fn load(bundle: &Bundle) -> Result<Self, EncodeError> {
        let start = Instant::now();
        let m = &bundle.manifest;
        let path = bundle.text_path();
        let tokenizer_path = bundle.tokenizer_path();
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| EncodeError::Load {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        let ctx = m.tokenizer.context_length;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: ctx,
                ..Default::default()
            }))
            .map_err(|e| EncodeError::Load {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        let batch = m.text.batch_size;
        let fact = || InferenceFact::dt_shape(i64::datum_type(), tvec!(batch, ctx));
        let mut inputs = vec![(m.text.input_ids.as_str(), fact())];
        if let Some(name) = &m.text.attention_mask {
            inputs.push((name.as_str(), fact()));
        }
        if let Some(name) = &m.text.token_type_ids {
            inputs.push((name.as_str(), fact()));
        }
        let plan = load_plan(&path, &inputs, &m.text.output, Device::Cpu, 1)?;
        check_output(&plan, &path, batch, Some(m.embedding.dim))?;
        let load_time = start.elapsed();
        log::info!("loaded {} in {load_time:.2?}", path.display());
        Ok(TractTextEncoder {
            path,
            tokenizer_path,
            plan,
            tokenizer,
            batch,
            ctx,
            pad_id: m.tokenizer.pad_id,
            feed_mask: m.text.attention_mask.is_some(),
            feed_token_types: m.text.token_type_ids.is_some(),
            dim: m.embedding.dim,
            load_time,
        })
    }

    /// The embedding size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How long loading and optimizing took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Tokenizes one prompt: special tokens added, truncated and padded to the context length.
    pub fn tokenize(&self, text: &str) -> Result<Tokens, EncodeError> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| EncodeError::Tokenize {
                path: self.tokenizer_path.clone(),
                text: text.to_string(),
                message: e.to_string(),
            })?;
        let mut ids: Vec<i64> = enc.get_ids().iter().map(|&i| i64::from(i)).collect();
        ids.truncate(self.ctx);
        let mut mask = vec![1i64; ids.len()];
        ids.resize(self.ctx, i64::from(self.pad_id));
        mask.resize(self.ctx, 0);
        Ok(Tokens { ids, mask })
    }

    /// Embeds prompts, `batch_size` at a time; one unit-length row per prompt.
    pub fn embed<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<Vec<Vec<f32>>, EncodeError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }

    fn embed_batch<S: AsRef<str>>(&mut self, texts: &[S]) -> Result<Vec<Vec<f32>>, EncodeError> {
        let (b, ctx) = (self.batch, self.ctx);
        let mut ids = vec![i64::from(self.pad_id); b * ctx];
        let mut mask = vec![0i64; b * ctx];
        for (row, text) in texts.iter().enumerate() {
            let t = self.tokenize(text.as_ref())?;
            ids[row * ctx..(row + 1) * ctx].copy_from_slice(&t.ids);
            mask[row * ctx..(row + 1) * ctx].copy_from_slice(&t.mask);
        }
        // Unused rows of the last batch get a minimal valid sequence (the first row's).
        for row in texts.len()..b {
            ids.copy_within(0..ctx, row * ctx);
            mask.copy_within(0..ctx, row * ctx);
        }
        let run_err = |e: TractError| EncodeError::Run {
            path: self.path.clone(),
            message: format!("{e:#}"),
        };
        let mut inputs: TVec<TValue> = tvec!();
        inputs.push(Tensor::from_shape(&[b, ctx], &ids).map_err(run_err)?.into());
        if self.feed_mask {
            inputs.push(
                Tensor::from_shape(&[b, ctx], &mask)
                    .map_err(run_err)?
                    .into(),
            );
        }
        if self.feed_token_types {
            inputs.push(Tensor::zero::<i64>(&[b, ctx]).map_err(run_err)?.into());
        }
        crate::vision::memory::for_frames();
        let outputs = self.plan.run(inputs).map_err(run_err)?;
        let plain = outputs[0].try_as_plain_ram().map_err(run_err)?;
        let flat = plain.as_slice::<f32>().map_err(run_err)?;
        texts
            .iter()
            .enumerate()
            .map(|(row, _)| {
                let mut v = vec![0f32; self.dim];
                l2_normalize_into(
                    &flat[row * self.dim..(row + 1) * self.dim],
                    &mut v,
                    &self.path,
                )?;
                Ok(v)
            })
            .collect()
    }
}
