//! clipsight: an assistive-vision runtime for CLIP-family encoders on small boards.
//!
//! The data flows one way, one stage per module:
//! capture → [`decode`]/[`preprocess`] → [`encode`] → [`matching`] → decide → speak.
//! [`bundle`] loads the model files and their manifest; [`prompts`], [`calibrate`] and
//! [`bank`] turn prompt sets into calibrated prompt banks. [`home`] is the home profile's fall
//! monitor, event log and caregiver channels (MQTT, webhook).

pub mod bank;
pub mod bench;
pub mod build_bank;
pub mod bundle;
pub mod calibrate;
#[cfg(all(feature = "camera", target_os = "linux"))]
pub mod camera;
pub mod capture;
pub mod config;
pub mod controls;
pub mod decide;
pub mod decode;
pub mod embedder;
pub mod encode;
#[cfg(feature = "ort")]
pub mod encode_ort;
pub mod gate;
pub mod home;
pub mod input;
pub mod matching;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod preprocess;
pub mod prompts;
pub mod speech;
pub mod toml_error;
