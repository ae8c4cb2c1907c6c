//! The live pipeline: capture → preprocess → encode → match → decide → speak.
//!
//! The only module that wires the stages. A capture thread pulls frames from the
//! [`FrameSource`] and hands them over a one-slot channel where the newest frame wins (a
//! frame replaced before it was looked at is dropped and counted). The calling thread runs
//! the change gate, the darkness check, the encoder, the match against every bank and the
//! decision engine, and sends what is worth saying to the speech thread. Controls (describe
//! now, mute, repeat, verbosity, and the home monitor's cancel/acknowledge) arrive on a
//! channel. Every wait has a timeout, so a stop request is noticed within
//! [`POLL`]. A bad frame or a failed encode is counted and skipped; a camera that stops
//! delivering, and an encoder that keeps failing, are said aloud.

pub mod metrics;
pub mod notify;
pub mod personal;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};

use crate::capture::{CaptureError, FrameSource, SourceEvent};
use crate::decide::people::PeopleSpeech;
use crate::decide::{DecisionConfig, DecisionEngine, LabelInfo};
use crate::matching::Matcher;
use crate::pipeline::metrics::{FrameCounts, RunStats, StageLatencies};
use crate::pipeline::personal::{Finding, Personal, Teaching};
use crate::prompts::bank::Bank;
use crate::speech::SpeechCommand;
use crate::types::Frame;
use crate::types::{Command, Control, Scores};
use crate::types::{Kind, Utterance};
use crate::vision::gate::{ChangeGate, DarkConfig, GateConfig, Thumbnail};
use crate::vision::pose::{context_margin, furniture_veto, Direction, PoseEstimator, Posture};
use crate::vision::ImageEmbedder;

/// The longest any loop waits before looking at the stop flag again.
pub const POLL: Duration = Duration::from_millis(100);

/// How often the frame loop pets the systemd watchdog ([`crate::pipeline::notify::watchdog`]).
pub const WATCHDOG_PERIOD: Duration = Duration::from_secs(1);

/// What the decision engine knows after one frame, for observers such as the home monitor.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Seconds on the source's clock.
    pub t: f64,
    /// The frame was too dark to judge: the scores below are stale, not evidence.
    pub dark: bool,
    /// The labels, in bank order.
    pub labels: &'a [LabelInfo],
    /// Smoothed calibrated scores (z), one per label.
    pub smoothed: &'a [f32],
    /// Whether each label is in view (after dwell and hysteresis).
    pub present: &'a [bool],
    /// What the pose stage saw on the last judged frame (with a person model).
    pub pose: Option<PoseView>,
}

/// The pose stage's verdict on a frame, for observers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoseView {
    /// People in view.
    pub people: usize,
    /// Someone is lying as after a fall (not on a bed or sofa, as far as the image context
    /// tells).
    pub fallen: bool,
    /// Where the person lying as after a fall is (when `fallen`).
    pub fallen_at: Option<Direction>,
    /// Someone is standing or sitting.
    pub up: bool,
}

/// Something that watches the decisions and may speak: the home monitor.
pub trait Observer: Send {
    /// One frame's decisions; returns what to say.
    fn observe(&mut self, obs: &Observation<'_>) -> Vec<Utterance>;
    /// A command; returns what to say. Commands it does not handle return nothing.
    fn control(&mut self, command: Command, t: f64) -> Vec<Utterance>;
    /// Called on every turn of the loop (at least every [`POLL`]), frames or not: timers.
    fn tick(&mut self, t: f64) -> Vec<Utterance>;
    /// The pipeline's stats, every `stats_interval_s` (the home monitor's MQTT `stats`).
    fn stats(&mut self, _stats: &RunStats) {}
    /// Ends cleanly after the run (closes connections).
    fn finish(self: Box<Self>) {}
}

/// The pipeline's settings (the `run` config's stage sections).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Smoothing, dwell, cooldowns and verbosity (`[decision]`).
    pub decision: DecisionConfig,
    /// The change gate (`[gate]`).
    pub gate: GateConfig,
    /// The darkness check (`[dark]`).
    pub dark: DarkConfig,
    /// No frame for this many seconds means the camera is lost.
    pub stall_s: f64,
    /// Log a stats line this often (0: only at the end).
    pub stats_interval_s: f64,
    /// Say "vision error" after this many encoder failures in a row.
    pub failures_before_telling: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            decision: DecisionConfig::default(),
            gate: GateConfig::default(),
            dark: DarkConfig::default(),
            stall_s: 3.0,
            stats_interval_s: 30.0,
            failures_before_telling: 5,
        }
    }
}

/// Why a run cannot start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The frame source cannot go on (a camera that cannot be opened).
    #[error("the frame source failed: {0}")]
    Source(String),
    /// A pipeline thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the banks hold {banks}-dimensional embeddings but the encoder makes {encoder}")]
    /// The banks were made for embeddings of another size.
    Dimension {
        /// The banks' embedding size.
        banks: usize,
        /// The encoder's.
        encoder: usize,
    },
}

/// What the capture thread says besides frames.
enum SourceMsg {
    Bad(String),
    Event(SourceEvent),
    End,
    Fatal(String),
}

struct Capture {
    frames: Receiver<(Frame, Instant)>,
    events: Receiver<SourceMsg>,
    frames_in: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

fn spawn_capture(
    mut source: Box<dyn FrameSource>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Capture> {
    let (ftx, frx) = crossbeam_channel::bounded::<(Frame, Instant)>(1);
    let (etx, erx) = crossbeam_channel::bounded::<SourceMsg>(256);
    let frames_in = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let (fin, drp, stale) = (frames_in.clone(), dropped.clone(), frx.clone());
    let handle = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let send = |m: SourceMsg| {
                let _ = etx.send_timeout(m, POLL);
            };
            while !stop.load(Ordering::Relaxed) {
                let result = source.next();
                for e in source.take_events() {
                    send(SourceMsg::Event(e));
                }
                match result {
                    Ok(Some(frame)) => {
                        fin.fetch_add(1, Ordering::Relaxed);
                        let mut item = (frame, Instant::now());
                        // The newest frame wins: replace a frame nobody has taken yet.
                        loop {
                            match ftx.try_send(item) {
                                Ok(()) => break,
                                Err(TrySendError::Full(back)) => {
                                    if stale.try_recv().is_ok() {
                                        drp.fetch_add(1, Ordering::Relaxed);
                                    }
                                    item = back;
                                }
                                Err(TrySendError::Disconnected(_)) => return,
                            }
                        }
                    }
                    Ok(None) => {
                        send(SourceMsg::End);
                        return;
                    }
                    Err(CaptureError::BadFrame(e)) => send(SourceMsg::Bad(e)),
                    Err(CaptureError::Open(e)) => {
                        send(SourceMsg::Fatal(e));
                        return;
                    }
                    Err(e @ (CaptureError::Disconnected(_) | CaptureError::Stalled(_))) => {
                        send(SourceMsg::Event(SourceEvent::Lost(e.to_string())));
                    }
                }
            }
        })?;
    Ok(Capture {
        frames: frx,
        events: erx,
        frames_in,
        dropped,
        handle,
    })
}

/// The vision-and-decision half of the pipeline.
pub struct Pipeline {
    config: PipelineConfig,
    embedder: ImageEmbedder,
    matcher: Matcher,
    engine: DecisionEngine,
    pose: Option<PoseEstimator>,
    people: Option<PeopleSpeech>,
    observer: Option<Box<dyn Observer>>,
    personal: Option<Personal>,
    /// The last bank is the personal bank.
    personal_bank: bool,
    /// Said once after "Ready." (a personal bank that needs teaching again).
    notice: Option<String>,
}

/// Mutable state of one run.
struct RunState {
    start: Instant,
    counts: FrameCounts,
    lat: StageLatencies,
    thumb: Thumbnail,
    gate: ChangeGate,
    scores: Scores,
    have_scores: bool,
    pose: Option<PoseView>,
    /// The directions of the people in view on the last judged frame (reused).
    directions: Vec<Direction>,
    present: Vec<bool>,
    smoothed: Vec<f32>,
    last_t: f64,
    last_frame: Instant,
    camera_ok: bool,
    failures: u32,
    told_failure: bool,
    teaching: Option<Teaching>,
    finding: Option<Finding>,
}

impl Pipeline {
    /// A pipeline over `banks` with `embedder`; `observer` (the home monitor) sees every frame's decisions.
    pub fn new(
        config: PipelineConfig,
        embedder: ImageEmbedder,
        banks: Vec<Bank>,
        observer: Option<Box<dyn Observer>>,
    ) -> Result<Self, PipelineError> {
        for b in &banks {
            if b.dim() != embedder.dim() {
                return Err(PipelineError::Dimension {
                    banks: b.dim(),
                    encoder: embedder.dim(),
                });
            }
        }
        let matcher = Matcher::new(banks);
        let engine = DecisionEngine::new(config.decision, matcher.labels());
        Ok(Pipeline {
            config,
            embedder,
            matcher,
            engine,
            pose: None,
            people: None,
            observer,
            personal: None,
            personal_bank: false,
            notice: None,
        })
    }

    /// Adds teaching and find mode. `has_bank`: the last of the banks given to
    /// [`Pipeline::new`] is the personal bank. `notice` is said once after "Ready.".
    pub fn with_personal(
        mut self,
        personal: Personal,
        has_bank: bool,
        notice: Option<String>,
    ) -> Self {
        self.personal = Some(personal);
        self.personal_bank = has_bank;
        self.notice = notice;
        self
    }

    /// Adds the person/pose stage: it runs on every frame the gate lets through, in this
    /// thread, and its verdict reaches the observer.
    pub fn with_pose(mut self, pose: PoseEstimator) -> Self {
        self.pose = Some(pose);
        self
    }

    /// Announces people with their place ("Person on your left.", "Someone is lying on the
    /// ground ahead.") from the pose stage, in place of the banks' person labels. Needs
    /// [`Pipeline::with_pose`].
    pub fn with_people(mut self, people: PeopleSpeech) -> Self {
        self.engine.leave_people_to_pose();
        self.people = Some(people);
        self
    }

    /// Takes the observer back (to shut it down cleanly after a run).
    pub fn take_observer(&mut self) -> Option<Box<dyn Observer>> {
        self.observer.take()
    }

    /// Runs until the source ends, `stop` is set, or a `Quit` control arrives. Says "Ready."
    /// first. `on_stats` gets a report every `stats_interval_s`; the final one is returned.
    pub fn run(
        &mut self,
        source: Box<dyn FrameSource>,
        speech: &Sender<SpeechCommand>,
        controls: &Receiver<Command>,
        stop: Arc<AtomicBool>,
        on_stats: &mut dyn FnMut(&RunStats),
    ) -> Result<RunStats, PipelineError> {
        log::info!("source: {}", source.describe());
        let n = self.engine.labels().len();
        let mut st = RunState {
            start: Instant::now(),
            counts: FrameCounts::default(),
            lat: StageLatencies::default(),
            thumb: Thumbnail::default(),
            gate: ChangeGate::new(self.config.gate),
            scores: Scores {
                cosine: vec![0.0; n],
                z: vec![0.0; n],
                allowed: vec![true; n],
            },
            have_scores: false,
            pose: None,
            directions: Vec::new(),
            present: vec![false; n],
            smoothed: vec![0.0; n],
            last_t: 0.0,
            last_frame: Instant::now(),
            camera_ok: true,
            failures: 0,
            told_failure: false,
            teaching: None,
            finding: None,
        };
        let say = |u: Utterance| {
            let _ = speech.send_timeout(SpeechCommand::Say(u), POLL);
        };
        say(Utterance::status("Ready.", 0.0));
        if let Some(notice) = self.notice.take() {
            say(Utterance::status(notice, 0.0));
        }
        // The capture thread has its own flag: the caller's `stop` says only whether a stop
        // was asked (so a folder that ran out still has its queued speech said).
        let capture_stop = Arc::new(AtomicBool::new(false));
        let capture = spawn_capture(source, capture_stop.clone())?;
        let mut next_stats = self.config.stats_interval_s;
        let mut fatal = None;
        let mut ended = false;
        crate::pipeline::notify::watchdog();
        let mut last_pet = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            // The loop turns at least every POLL; a frame stuck in the encoder stops the pets
            // and lets systemd restart the service.
            if last_pet.elapsed() >= WATCHDOG_PERIOD {
                crate::pipeline::notify::watchdog();
                last_pet = Instant::now();
            }
            select! {
                recv(capture.frames) -> msg => {
                    if let Ok((frame, at)) = msg {
                        self.frame(&mut st, frame, at, &say);
                    }
                }
                recv(capture.events) -> msg => match msg {
                    Ok(SourceMsg::Bad(e)) => {
                        st.counts.bad += 1;
                        log::warn!("skipped a bad frame: {e}");
                    }
                    Ok(SourceMsg::Event(SourceEvent::Lost(why))) => {
                        self.camera_lost(&mut st, &why, &say);
                    }
                    Ok(SourceMsg::Event(SourceEvent::Back)) => {}
                    Ok(SourceMsg::Fatal(e)) => {
                        fatal = Some(e);
                        break;
                    }
                    Ok(SourceMsg::End) | Err(_) => {
                        ended = true;
                    }
                },
                recv(controls) -> msg => {
                    if let Ok(c) = msg {
                        if matches!(c, Command::User { control: Control::Quit, .. }) {
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                        self.control(&mut st, c, speech, &say);
                    }
                }
                default(POLL) => {}
            }
            if ended {
                // Take the last frame, if one is waiting, then finish.
                if let Ok((frame, at)) = capture.frames.try_recv() {
                    self.frame(&mut st, frame, at, &say);
                }
                break;
            }
            if let Some(obs) = self.observer.as_mut() {
                for u in obs.tick(st.last_t) {
                    say(u);
                }
            }
            self.personal_turn(&mut st, speech, &say);
            // Stall watchdog: no frame for too long is a lost camera, said once.
            let quiet = st.last_frame.elapsed().as_secs_f64();
            if quiet > self.config.stall_s {
                self.camera_lost(&mut st, &format!("no frame for {quiet:.1} s"), &say);
            }
            let elapsed = st.start.elapsed().as_secs_f64();
            if self.config.stats_interval_s > 0.0 && elapsed >= next_stats {
                next_stats = elapsed + self.config.stats_interval_s;
                let stats = self.stats(&st, &capture);
                log::info!("{}", stats.summary());
                if let Some(obs) = self.observer.as_mut() {
                    obs.stats(&stats);
                }
                on_stats(&stats);
            }
        }
        capture_stop.store(true, Ordering::Relaxed);
        // The capture thread notices the flag within one frame; don't wait on a stuck device.
        let deadline = Instant::now() + Duration::from_secs(1);
        while !capture.handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let stats = self.stats(&st, &capture);
        if capture.handle.is_finished() {
            let _ = capture.handle.join();
        }
        if let Some(e) = fatal {
            return Err(PipelineError::Source(e));
        }
        Ok(stats)
    }

    fn stats(&self, st: &RunState, capture: &Capture) -> RunStats {
        let elapsed = st.start.elapsed().as_secs_f64();
        let mut counts = st.counts;
        counts.frames_in = capture.frames_in.load(Ordering::Relaxed);
        counts.dropped = capture.dropped.load(Ordering::Relaxed);
        RunStats {
            elapsed_s: elapsed,
            frames: counts,
            encoded_fps: if elapsed > 0.0 {
                counts.processed as f64 / elapsed
            } else {
                0.0
            },
            latency_ms: st.lat.report(),
            speech: Default::default(),
        }
    }

    fn control(
        &mut self,
        st: &mut RunState,
        c: Command,
        speech: &Sender<SpeechCommand>,
        say: &dyn Fn(Utterance),
    ) {
        log::info!("command: {c:?}");
        let control = match &c {
            Command::User { control, .. } => Some(*control),
            Command::Home(_) => None,
            Command::Personal { request, .. } => {
                self.personal_request(st, request, say);
                return;
            }
        };
        match control {
            Some(Control::Describe) => {
                let mut u = self.engine.describe(st.last_t);
                // With the pose stage, people come with their place.
                if let Some(people) = self.people.as_ref().and_then(PeopleSpeech::describe) {
                    u.text = match u.text.as_str() {
                        "Nothing to describe yet." | "I'm not sure." => people,
                        "I can't see: too dark." => u.text,
                        _ => format!("{} {people}", u.text),
                    };
                }
                say(u)
            }
            Some(Control::Mute) => {
                let _ = speech.send_timeout(SpeechCommand::Mute(None), POLL);
            }
            Some(Control::Repeat) => {
                let _ = speech.send_timeout(SpeechCommand::RepeatLast, POLL);
            }
            Some(Control::Verbosity) => {
                let v = self.engine.verbosity().next();
                self.engine.set_verbosity(v);
                say(Utterance {
                    interrupt: true,
                    ..Utterance::status(v.describe(), st.last_t)
                });
            }
            _ => {}
        }
        if let Some(obs) = self.observer.as_mut() {
            for u in obs.control(c, st.last_t) {
                say(u);
            }
        }
    }

    /// One frame through the stages: gate → embed → score → decide → observe → speak.
    fn frame(&mut self, st: &mut RunState, frame: Frame, at: Instant, say: &dyn Fn(Utterance)) {
        let t = frame.t;
        st.last_t = t;
        st.last_frame = Instant::now();
        st.lat.queue.record(at.elapsed());
        self.camera_back(st, t, say);
        let t0 = Instant::now();
        let look = self.gate(st, &frame, t);
        st.lat.gate.record(t0.elapsed());
        match look {
            Look::Dark => {
                st.counts.dark += 1;
                st.gate.reset();
            }
            Look::Unchanged => st.counts.skipped_unchanged += 1,
            Look::Encode => {
                self.embed_and_score(st, &frame, t, say);
                self.estimate_pose(st, &frame);
            }
        }
        // An unchanged frame is one more observation of the last verdict, as for the scores.
        let people_said = match (&mut self.people, look) {
            (Some(p), Look::Encode | Look::Unchanged) if st.pose.is_some() => {
                let lying = st.pose.and_then(|v| v.fallen_at);
                p.observe(t, &st.directions, lying)
            }
            _ => Vec::new(),
        };
        let t_decide = Instant::now();
        let mut out = match look {
            Look::Dark => self.engine.observe_dark(t),
            // A skipped frame is one more observation of the last scores.
            _ if st.have_scores => self.engine.observe_matched(t, &st.scores),
            _ => Vec::new(),
        };
        out.extend(people_said);
        if st.finding.is_some() || st.teaching.is_some() {
            // Find mode and teaching hold back objects and people; hazards still come.
            out.retain(|u| !matches!(u.kind, Kind::Object | Kind::Person));
        }
        self.observe(st, t, look == Look::Dark, &mut out);
        st.lat.decide.record(t_decide.elapsed());
        if !out.is_empty() {
            // Most urgent first within one frame too (hazards, then check-ins, ...).
            out.sort_by_key(|u| std::cmp::Reverse(u.urgency()));
            for u in out {
                if u.kind == Kind::Hazard {
                    log::warn!("hazard: {}", u.text);
                } else {
                    log::debug!("to speech at {t:.2} s: {}", u.text);
                }
                say(u);
            }
            st.lat.to_speech.record(at.elapsed());
        }
    }

    /// The change gate and the darkness check: whether this frame is judged, and how.
    fn gate(&self, st: &mut RunState, frame: &Frame, t: f64) -> Look {
        st.thumb.update((&frame.image).into());
        if self.config.dark.is_dark(&st.thumb) {
            Look::Dark
        } else if !st.have_scores || st.gate.should_encode(&st.thumb, t) {
            Look::Encode
        } else {
            Look::Unchanged
        }
    }

    /// Encodes the frame and scores it against every bank; a failure is counted, and said
    /// aloud once when the encoder keeps failing.
    fn embed_and_score(
        &mut self,
        st: &mut RunState,
        frame: &Frame,
        t: f64,
        say: &dyn Fn(Utterance),
    ) {
        let t0 = Instant::now();
        let embedded = self
            .embedder
            .preprocess((&frame.image).into())
            .and_then(|()| {
                st.lat.preprocess.record(t0.elapsed());
                let t1 = Instant::now();
                let e = self.embedder.encode();
                st.lat.encode.record(t1.elapsed());
                e
            });
        match embedded {
            Ok(embedding) => {
                if let Some(teaching) = st.teaching.as_mut() {
                    teaching.frames.push(embedding.to_vec());
                }
                let tm = Instant::now();
                self.matcher.score(embedding, &mut st.scores);
                st.lat.matching.record(tm.elapsed());
                st.counts.processed += 1;
                st.have_scores = true;
                st.gate.encoded(&st.thumb, t);
                if st.told_failure {
                    say(Utterance::status("Vision back.", t));
                }
                st.failures = 0;
                st.told_failure = false;
            }
            Err(e) => {
                st.counts.failed += 1;
                st.failures += 1;
                log::error!("frame {}: {e}", frame.seq);
                if st.failures >= self.config.failures_before_telling && !st.told_failure {
                    st.told_failure = true;
                    say(Utterance::status(
                        "Vision error: I can't recognize anything.",
                        t,
                    ));
                }
            }
        }
    }

    /// The pose stage on a judged frame: people, posture, and the fall verdict with the image
    /// context (bed, sofa, floor labels of the banks). A failure is logged and counted as
    /// "no verdict", never as "nobody fell".
    fn estimate_pose(&mut self, st: &mut RunState, frame: &Frame) {
        let Some(pose) = self.pose.as_mut() else {
            return;
        };
        let margin = context_margin(self.engine.labels(), &st.scores, pose.manifest());
        let vetoed = st.have_scores && margin.is_some_and(|m| furniture_veto(m, pose.manifest()));
        match pose.estimate((&frame.image).into()) {
            Ok(people) => {
                let fallen = people.fallen() && !vetoed;
                st.directions.clear();
                st.directions.extend(people.present().map(|p| p.direction));
                st.pose = Some(PoseView {
                    people: people.present().count(),
                    fallen,
                    fallen_at: people
                        .present()
                        .find(|p| fallen && p.posture == Posture::Lying)
                        .map(|p| p.direction),
                    up: people
                        .present()
                        .any(|p| matches!(p.posture, Posture::Standing | Posture::Sitting)),
                });
            }
            Err(e) => {
                st.pose = None;
                log::error!("frame {}: pose: {e}", frame.seq);
            }
        }
    }

    /// Hands the engine's view to the observer (the home monitor), if any.
    fn observe(&mut self, st: &mut RunState, t: f64, dark: bool, out: &mut Vec<Utterance>) {
        let Some(obs) = self.observer.as_mut() else {
            return;
        };
        for i in 0..st.present.len() {
            st.present[i] = self.engine.present(i);
            st.smoothed[i] = self.engine.smoothed(i);
        }
        out.extend(obs.observe(&Observation {
            t,
            dark: dark || !st.have_scores,
            labels: self.engine.labels(),
            smoothed: &st.smoothed,
            present: &st.present,
            pose: st.pose,
        }));
    }

    /// The camera went away (a source event, or no frame for `stall_s`): said once.
    fn camera_lost(&self, st: &mut RunState, why: &str, say: &dyn Fn(Utterance)) {
        if st.camera_ok {
            st.camera_ok = false;
            log::warn!("camera lost: {why}");
            say(Utterance::status("Camera lost.", st.last_t));
        }
    }

    /// Frames flow again after a loss: said once.
    fn camera_back(&self, st: &mut RunState, t: f64, say: &dyn Fn(Utterance)) {
        if !st.camera_ok {
            st.camera_ok = true;
            log::warn!("camera back");
            say(Utterance::status("Camera back.", t));
        }
    }
}

/// What the gate decided for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    /// Too dark to judge.
    Dark,
    /// Like the last encoded frame: its scores stand.
    Unchanged,
    /// Encode it.
    Encode,
}
