//! Run metrics: per-stage latency percentiles and frame counters.
//!
//! Latencies are kept in fixed-size rings (the newest samples win), so a long run uses
//! constant memory and recording a sample allocates nothing. Reports are plain structs that
//! serialize to JSON.

use std::time::Duration;

use serde::Serialize;

/// How many recent samples each stage keeps.
pub const RING: usize = 2048;

/// A ring of recent durations, in milliseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    samples: Vec<f32>,
    next: usize,
    count: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            samples: Vec::with_capacity(RING),
            next: 0,
            count: 0,
        }
    }
}

/// Percentiles of a stage, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples recorded in all, including those the ring has dropped.
    pub n: u64,
    /// Median of the kept samples, in ms.
    pub p50_ms: f32,
    /// 95th percentile of the kept samples, in ms.
    pub p95_ms: f32,
    /// Largest kept sample, in ms.
    pub max_ms: f32,
}

impl Latency {
    /// Adds one sample, replacing the oldest once the ring is full.
    pub fn record(&mut self, d: Duration) {
        let ms = d.as_secs_f32() * 1000.0;
        if self.samples.len() < RING {
            self.samples.push(ms);
        } else {
            self.samples[self.next] = ms;
        }
        self.next = (self.next + 1) % RING;
        self.count += 1;
    }

    /// Percentiles of the kept samples (all zeros when there are none).
    pub fn percentiles(&self) -> Percentiles {
        if self.samples.is_empty() {
            return Percentiles::default();
        }
        let mut s = self.samples.clone();
        s.sort_by(f32::total_cmp);
        let at = |q: f32| s[((s.len() - 1) as f32 * q).round() as usize];
        Percentiles {
            n: self.count,
            p50_ms: at(0.5),
            p95_ms: at(0.95),
            max_ms: s[s.len() - 1],
        }
    }
}

/// Per-stage latencies of the pipeline.
#[derive(Debug, Clone, Default)]
pub struct StageLatencies {
    /// Frame captured → picked up by the vision thread.
    pub queue: Latency,
    /// Thumbnail, darkness check and change gate.
    pub gate: Latency,
    /// Resize, crop and normalize (encoded frames only).
    pub preprocess: Latency,
    /// The image encoder (encoded frames only).
    pub encode: Latency,
    /// Scoring the embedding against the prompt banks (encoded frames only).
    pub matching: Latency,
    /// The decision engine and the home observer.
    pub decide: Latency,
    /// Frame captured → its utterances handed to speech (only frames that said something).
    pub to_speech: Latency,
}

/// Percentiles of each stage, as the stats JSON reports them (`latency_ms`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageReport {
    /// Frame captured → picked up by the vision thread.
    pub queue: Percentiles,
    /// Thumbnail, darkness check and change gate.
    pub gate: Percentiles,
    /// Resize, crop and normalize.
    pub preprocess: Percentiles,
    /// The image encoder.
    pub encode: Percentiles,
    /// Scoring against the prompt banks (JSON key `match`).
    #[serde(rename = "match")]
    pub matching: Percentiles,
    /// The decision engine and the home observer.
    pub decide: Percentiles,
    /// Frame captured → its utterances handed to speech.
    pub to_speech: Percentiles,
}

impl StageLatencies {
    /// Percentiles of every stage.
    pub fn report(&self) -> StageReport {
        StageReport {
            queue: self.queue.percentiles(),
            gate: self.gate.percentiles(),
            preprocess: self.preprocess.percentiles(),
            encode: self.encode.percentiles(),
            matching: self.matching.percentiles(),
            decide: self.decide.percentiles(),
            to_speech: self.to_speech.percentiles(),
        }
    }
}

/// Frame counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FrameCounts {
    /// Frames the source delivered.
    pub frames_in: u64,
    /// Frames encoded.
    pub processed: u64,
    /// Stale frames replaced by a newer one before they were looked at.
    pub dropped: u64,
    /// Frames the change gate skipped as unchanged.
    pub skipped_unchanged: u64,
    /// Frames too dark to judge.
    pub dark: u64,
    /// Frames that could not be read or decoded.
    pub bad: u64,
    /// Frames whose preprocessing or encoding failed.
    pub failed: u64,
}

/// A full report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    /// Run time so far, in seconds.
    pub elapsed_s: f64,
    /// Frame counters.
    pub frames: FrameCounts,
    /// Frames encoded per second of run time.
    pub encoded_fps: f64,
    /// Per-stage latency percentiles, in ms.
    pub latency_ms: StageReport,
    /// The speech thread's counters.
    pub speech: crate::speech::SpeechStats,
}

impl RunStats {
    /// One line for the log.
    pub fn summary(&self) -> String {
        let f = &self.frames;
        let l = &self.latency_ms;
        format!(
            "{:.1}s: frames in {}, processed {}, dropped {}, unchanged {}, dark {}, bad {}, failed {}; \
             {:.2} fps encoded; p50/p95 ms: preprocess {:.1}/{:.1}, encode {:.1}/{:.1}, match {:.2}/{:.2}, \
             decide {:.2}/{:.2}, frame→speech {:.1}/{:.1}",
            self.elapsed_s,
            f.frames_in,
            f.processed,
            f.dropped,
            f.skipped_unchanged,
            f.dark,
            f.bad,
            f.failed,
            self.encoded_fps,
            l.preprocess.p50_ms,
            l.preprocess.p95_ms,
            l.encode.p50_ms,
            l.encode.p95_ms,
            l.matching.p50_ms,
            l.matching.p95_ms,
            l.decide.p50_ms,
            l.decide.p95_ms,
            l.to_speech.p50_ms,
            l.to_speech.p95_ms,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_ring() {
        let mut l = Latency::default();
        assert_eq!(l.percentiles(), Percentiles::default());
        for i in 1..=100 {
            l.record(Duration::from_millis(i));
        }
        let p = l.percentiles();
        assert_eq!(p.n, 100);
        assert!((p.p50_ms - 50.0).abs() <= 1.0 && (p.p95_ms - 95.0).abs() <= 1.0);
        for _ in 0..RING {
            l.record(Duration::from_millis(7));
        }
        let p = l.percentiles();
        assert_eq!((p.p50_ms, p.max_ms), (7.0, 7.0));
        assert_eq!(p.n, 100 + RING as u64);
    }
}
