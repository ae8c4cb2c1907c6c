//! The home monitor as a pipeline [`Observer`]: decisions in, check-ins and alerts out.
//!
//! Per frame it reads the decision engine's smoothed score of the fall label (the
//! `fall_label` of `[home]`, a `person` label of the loaded banks) and whether any other
//! person label ("person standing", "person sitting", "person") is in view, and hands that to
//! [`HomeMonitor::observe`]. A frame too dark to judge becomes [`View::CantSee`], never "nobody
//! is lying down". Once a second it runs the monitor's timers. Commands reach it on the
//! pipeline's one bus: the home button's and the MQTT `set` topic's as they are, and the "OK"
//! and "acknowledge" controls (keys, control socket, stdin) become [`HomeCommand`]s. Time is the monitor's own clock, so timers also run while no frame arrives.

use crossbeam_channel::Sender;

use crate::decide::LabelInfo;
use crate::home::fall::{CommandSource, PersonObservation, View};
use crate::home::{HomeClock, HomeCommand, HomeConfig, HomeError, HomeMonitor, HomeSecrets};
use crate::pipeline::metrics::RunStats;
use crate::pipeline::{Observation, Observer};
use crate::types::Category;
use crate::types::Utterance;
use crate::types::{Command, Control, Origin};

/// How far above the fall label's threshold (in z) a pose "fallen" verdict counts.
const POSE_EVIDENCE_Z: f32 = 1.0;

/// Timers are run this often, in seconds.
const TICK_S: f64 = 1.0;

/// The pipeline [`Observer`] that drives a [`HomeMonitor`]: fall-label scores in, check-ins out.
pub struct HomeObserver {
    monitor: HomeMonitor,
    clock: HomeClock,
    fall_label: String,
    last_tick: f64,
}

impl HomeObserver {
    /// Starts the monitor of `config` (its channels, its event log) watching `labels`, the
    /// loaded banks' labels; `home.fall_label` must be one of them. Its button and MQTT
    /// commands go to `commands`, the pipeline's command bus.
    pub fn start(
        config: &HomeConfig,
        labels: &[LabelInfo],
        commands: Sender<Command>,
    ) -> Result<Self, HomeError> {
        if !labels.iter().any(|l| l.label == config.fall_label) {
            return Err(HomeError::FallLabel {
                label: config.fall_label.clone(),
                labels: labels
                    .iter()
                    .map(|l| l.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let secrets = HomeSecrets::load(config)?;
        let monitor = HomeMonitor::start(config.clone(), secrets, commands)?;
        Ok(Self::new(monitor, config.fall_label.clone()))
    }

    /// Watches `fall_label` with an already started monitor.
    pub fn new(monitor: HomeMonitor, fall_label: String) -> Self {
        HomeObserver {
            monitor,
            clock: HomeClock::new(),
            fall_label,
            last_tick: f64::NEG_INFINITY,
        }
    }

    /// Stamps the monitor's sentences with the pipeline's clock.
    fn convert(mut said: Vec<Utterance>, t: f64) -> Vec<Utterance> {
        for u in &mut said {
            u.t = t;
        }
        said
    }
}

impl Observer for HomeObserver {
    fn observe(&mut self, obs: &Observation<'_>) -> Vec<Utterance> {
        let at = self.clock.now();
        let view = if obs.dark {
            View::CantSee
        } else {
            match obs.labels.iter().position(|l| l.label == self.fall_label) {
                Some(i) => {
                    let threshold = obs.labels[i].z_threshold;
                    // The fall label's score, fused with the pose stage's verdict: either is
                    // evidence of someone lying on the floor.
                    let pose_lying = match obs.pose {
                        Some(p) if p.fallen => threshold + POSE_EVIDENCE_Z,
                        _ => f32::NEG_INFINITY,
                    };
                    View::Seen {
                        lying: obs.smoothed[i].max(pose_lying),
                        lying_threshold: threshold,
                        up: obs.pose.is_some_and(|p| p.up && !p.fallen)
                            || obs.labels.iter().enumerate().any(|(j, l)| {
                                j != i && l.category == Category::Person && obs.present[j]
                            }),
                    }
                }
                None => View::CantSee,
            }
        };
        let mut said = self.monitor.observe(&PersonObservation { at, view });
        said.extend(self.tick_due(at.mono));
        Self::convert(said, obs.t)
    }

    fn control(&mut self, command: Command, t: f64) -> Vec<Utterance> {
        let cmd = match command {
            Command::Home(cmd) => cmd,
            Command::Personal { .. } => return Vec::new(),
            Command::User { control, origin } => {
                // The socket is a socket; a key or the terminal is the button near the person.
                let source = match origin {
                    Origin::Socket => CommandSource::Socket,
                    Origin::Key | Origin::Stdin => CommandSource::Button,
                };
                match control {
                    Control::Ok => HomeCommand::Cancel { source },
                    Control::Acknowledge => HomeCommand::Acknowledge {
                        source,
                        by: "local".into(),
                        id: None,
                    },
                    _ => return Vec::new(),
                }
            }
        };
        let at = self.clock.now();
        Self::convert(self.monitor.command(&at, cmd), t)
    }

    fn tick(&mut self, t: f64) -> Vec<Utterance> {
        let now = self.clock.now().mono;
        Self::convert(self.tick_due(now), t)
    }

    /// The next MQTT `stats` message carries these (frame counts, latencies, frame rate).
    fn stats(&mut self, stats: &RunStats) {
        self.monitor
            .set_pipeline_stats(serde_json::to_value(stats).unwrap_or_default());
    }

    /// Stops the channels cleanly (publishes `offline`).
    fn finish(self: Box<Self>) {
        self.monitor.shutdown();
    }
}

impl HomeObserver {
    fn tick_due(&mut self, mono: f64) -> Vec<Utterance> {
        if mono - self.last_tick < TICK_S {
            return Vec::new();
        }
        self.last_tick = mono;
        let at = self.clock.now();
        self.monitor.tick(&at)
    }
}

impl std::fmt::Debug for HomeObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeObserver")
            .field("fall_label", &self.fall_label)
            .finish_non_exhaustive()
    }
}
