//! The image half of the data flow in one object: RGB frame → preprocess → encode → embedding.
//!
//! It owns the reused buffers (the normalized tensor and the embedding), so embedding a frame
//! allocates nothing here. Failures are [`EmbedError`]s; the caller decides whether to skip
//! the frame or stop.

pub mod encoder;
pub mod gate;
pub mod kernels;
pub mod memory;
pub mod onnx_data;
#[cfg(feature = "ort")]
pub mod ort;
pub mod pose;
pub mod preprocess;
mod resample;
pub mod select;
pub mod tract;

use crate::types::RgbView;
use crate::vision::encoder::{EncodeError, ImageEncoder};
use crate::vision::preprocess::{PreprocessError, PreprocessSpec, Preprocessor};

/// Why a frame could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Preprocessing refused the frame (empty image, bad buffer).
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// The encoder failed on the preprocessed tensor.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// At construction: the preprocessing output size differs from the encoder's input size.
    #[error("the encoder takes {encoder} values but preprocessing makes {preprocess}")]
    Mismatch {
        /// Values the encoder takes (`3 × N × N`).
        encoder: usize,
        /// Values preprocessing writes (`3 × N × N`).
        preprocess: usize,
    },
}

/// Preprocessing plus an image encoder, with reused buffers: RGB frame → unit-length embedding.
pub struct ImageEmbedder {
    pre: Preprocessor,
    encoder: Box<dyn ImageEncoder>,
    pixels: Vec<f32>,
    embedding: Vec<f32>,
}

impl ImageEmbedder {
    /// Pairs preprocessing with an encoder; fails when their tensor sizes differ.
    pub fn new(spec: PreprocessSpec, encoder: Box<dyn ImageEncoder>) -> Result<Self, EmbedError> {
        let pre = Preprocessor::new(spec);
        if pre.output_len() != encoder.input_len() {
            return Err(EmbedError::Mismatch {
                encoder: encoder.input_len(),
                preprocess: pre.output_len(),
            });
        }
        Ok(ImageEmbedder {
            pixels: vec![0.0; pre.output_len()],
            embedding: vec![0.0; encoder.dim()],
            pre,
            encoder,
        })
    }

    /// The embedding size.
    pub fn dim(&self) -> usize {
        self.embedding.len()
    }

    /// Embeds one RGB image; the result is valid until the next call.
    pub fn embed(&mut self, img: RgbView<'_>) -> Result<&[f32], EmbedError> {
        self.preprocess(img)?;
        self.encode()
    }

    /// The first step of [`ImageEmbedder::embed`]: resize, crop and normalize `img` into the
    /// input buffer. The pipeline times the two steps itself.
    pub fn preprocess(&mut self, img: RgbView<'_>) -> Result<(), EmbedError> {
        Ok(self.pre.run(img, &mut self.pixels)?)
    }

    /// The second step: encodes the last preprocessed frame; the result is valid until the
    /// next call.
    pub fn encode(&mut self) -> Result<&[f32], EmbedError> {
        self.encoder.encode(&self.pixels, &mut self.embedding)?;
        Ok(&self.embedding)
    }
}
