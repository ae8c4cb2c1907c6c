//! Mono 16-bit PCM: the WAV codec the espeak and wav speakers use, and the hazard earcon.

use std::time::Duration;

/// Mono 16-bit PCM.
#[derive(Debug, Clone, PartialEq)]
pub struct Pcm {
    /// Sample rate, in Hz.
    pub rate: u32,
    /// The samples, one channel.
    pub samples: Vec<i16>,
}

impl Pcm {
    /// How long the samples last when played at `rate`.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.rate.max(1)))
    }

    /// A canonical WAV file with correct lengths.
    pub fn to_wav(&self) -> Vec<u8> {
        let data_len = (self.samples.len() * 2) as u32;
        let mut out = Vec::with_capacity(44 + data_len as usize);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&self.rate.to_le_bytes());
        out.extend_from_slice(&(self.rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for s in &self.samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// Parses a mono 16-bit WAV (espeak-ng's `--stdout` writes lengths as 0xFFFFFFFF when
    /// streaming, so the data chunk runs to the end of the bytes).
    pub fn from_wav(bytes: &[u8]) -> Option<Pcm> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return None;
        }
        let mut at = 12;
        let mut rate = None;
        while at + 8 <= bytes.len() {
            let id = &bytes[at..at + 4];
            let len =
                u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
                    as usize;
            let body = at + 8;
            if id == b"fmt " && body + 16 <= bytes.len() {
                let channels = u16::from_le_bytes([bytes[body + 2], bytes[body + 3]]);
                let bits = u16::from_le_bytes([bytes[body + 14], bytes[body + 15]]);
                if channels != 1 || bits != 16 {
                    return None;
                }
                rate = Some(u32::from_le_bytes([
                    bytes[body + 4],
                    bytes[body + 5],
                    bytes[body + 6],
                    bytes[body + 7],
                ]));
            } else if id == b"data" {
                let end = body.saturating_add(len).min(bytes.len());
                let samples = bytes[body..end]
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return Some(Pcm {
                    rate: rate?,
                    samples,
                });
            }
            at = body.saturating_add(len + (len & 1));
        }
        None
    }

    /// Root-mean-square amplitude.
    pub fn rms(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let sum: f64 = self.samples.iter().map(|&s| f64::from(s).powi(2)).sum();
        (sum / self.samples.len() as f64).sqrt()
    }
}

/// A soft sine tone followed by a short gap.
pub fn earcon(rate: u32, hz: f32, ms: u32) -> Vec<i16> {
    const AMPLITUDE: f32 = 9000.0;
    const GAP_MS: u32 = 60;
    let n = (rate * ms / 1000) as usize;
    let fade = (n / 8).max(1);
    let mut out: Vec<i16> = (0..n)
        .map(|i| {
            let env = (i.min(n - 1 - i) as f32 / fade as f32).min(1.0);
            let phase = 2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32;
            (AMPLITUDE * env * phase.sin()) as i16
        })
        .collect();
    out.extend(std::iter::repeat_n(0, (rate * GAP_MS / 1000) as usize));
    out
}
