//! clipsight: an assistive-vision runtime for CLIP-family encoders on small boards.
//!
//! The data flows one way, one stage per module, in this order:
//!
//! 1. [`capture`]: frame sources (camera, image folders) and image decoding → [`capture::Frame`].
//! 2. [`vision`]: the change gate, preprocessing and the image encoder → an embedding.
//! 3. [`matching`]: the embedding against the prompt banks → calibrated scores.
//! 4. [`decide`]: scores over time → what is worth saying ([`decide::Utterance`]).
//! 5. [`speech`]: the speech queue and the speakers.
//!
//! [`pipeline`] wires those stages into the live loop; [`controls`] brings the user's
//! commands in. [`model`] loads a model bundle and its manifest; [`prompts`] turns prompt sets
//! into calibrated prompt banks. [`home`] is the home profile's fall monitor, event log and
//! caregiver channels (MQTT, webhook). [`cli`] is the command line's edge.

pub mod capture;
pub mod decide;
pub mod matching;
pub mod speech;
pub mod vision;

pub mod cli;
pub mod controls;
pub mod home;
pub mod model;
pub mod pipeline;
pub mod prompts;
pub mod toml_error;
pub mod types;

pub use types::{Category, Control, Frame, Kind, RgbView, Scores, Utterance};
