//! clipsight: an assistive-vision runtime for CLIP-family encoders on small boards.
//!
//! The data flows one way, one stage per module:
//! capture → [`decode`]/[`preprocess`] → [`encode`] → [`matching`] → decide → speak.
//! [`bundle`] loads the model files and their manifest; [`prompts`], [`calibrate`] and
//! [`bank`] turn prompt sets into calibrated prompt banks. [`home`] is the home profile's fall
//! monitor, event log and caregiver channels (MQTT, webhook).

pub mod bank;
pub mod build_bank;
pub mod bundle;
pub mod calibrate;
pub mod decode;
pub mod embedder;
pub mod encode;
pub mod home;
pub mod matching;
pub mod preprocess;
pub mod prompts;
