//! clipsight: an assistive-vision runtime for CLIP-family encoders on small boards.
//!
//! The data flows one way, one stage per module, in this order:
//!
//! 1. [`capture`]: frame sources (camera, image folders) and image decoding → [`types::Frame`].
//! 2. [`vision`]: the change gate, preprocessing and the image encoder → an embedding.
//! 3. [`matching`]: the embedding against the prompt banks → calibrated scores.
//! 4. [`decide`]: scores over time → what is worth saying ([`types::Utterance`]).
//! 5. [`speech`]: the speech queue and the speakers.
//!
//! [`pipeline`] wires those stages into the live loop; [`controls`] brings the user's
//! commands in. [`model`] loads a model bundle and its manifest; [`prompts`] turns prompt sets
//! into calibrated prompt banks. [`home`] is the home profile's fall monitor, event log and
//! caregiver channels (MQTT, webhook). [`cli`] is the command line's edge.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

// The stages, in the order a frame goes through them.
pub mod capture;
// Change gate, preprocessing, image encoder.
pub mod vision;
// Embedding × banks → calibrated scores.
pub mod matching;
// Scores over time → what to say.
pub mod decide;

// Accuracy on labelled photos (`clipsight eval`).
pub mod eval;
// The speech queue and speakers.
pub mod speech;

// What wires and feeds the stages.
pub mod controls;
pub mod pipeline;

// Models and prompt banks.
pub mod model;
pub mod prompts;

// The home profile, the command line, shared pieces.
pub mod cli;
pub mod file_error;
pub mod home;
pub mod toml_error;
pub mod types;

pub use types::{Category, Command, Control, Frame, Kind, Origin, RgbView, Scores, Utterance};
