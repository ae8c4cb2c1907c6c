//! The decision engine: calibrated scores over time → what is worth saying.
//!
//! Input: one observation per frame, at a time `t` in seconds: each label's calibrated score
//! (z, see [`crate::prompts::bank::BankEntry::z`]), or "too dark to judge". A frame the change gate
//! skipped is passed in again with the last scores, so everything below runs on time, not
//! on encoded frames. Output: [`Utterance`]s for the speech stage.
//!
//! Per label: the median of its scores over the last `window_s` seconds; it *enters* when
//! that median has stayed at or above the label's threshold for `dwell_s` (hazards:
//! `hazard_dwell_s`), and *leaves* when it has stayed below `threshold − hysteresis_z` for
//! `leave_s`. Entering is announced, subject to the verbosity and the label's cooldown.
//! A label that stays in view is never announced again, so a static scene is silent.
//! Hazards are announced alone, first, with an earcon, and interrupt other speech.
//! Pure logic with time passed in: it cannot fail and never sleeps.

pub mod people;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::types::{Category, Kind, Scores, Utterance};

/// How much the device says on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// Hazards and device status only.
    Hazards,
    /// Also objects and people as they come into view.
    #[default]
    New,
    /// Also when things leave the view, with half the cooldown.
    All,
}

impl Verbosity {
    /// The next verbosity, in the order a button cycles through them.
    pub fn next(self) -> Verbosity {
        match self {
            Verbosity::Hazards => Verbosity::New,
            Verbosity::New => Verbosity::All,
            Verbosity::All => Verbosity::Hazards,
        }
    }

    /// The sentence that announces this verbosity.
    pub fn describe(self) -> &'static str {
        match self {
            Verbosity::Hazards => "Hazards only.",
            Verbosity::New => "New things.",
            Verbosity::All => "Everything.",
        }
    }
}

/// Timing and smoothing settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionConfig {
    /// Scores are the median over this many seconds of observations.
    pub window_s: f64,
    /// A label leaves when its smoothed score falls this far (in z) below its threshold.
    pub hysteresis_z: f32,
    /// An object or person must stay above its threshold this long before it is announced.
    pub dwell_s: f64,
    /// The same for hazards: short, because a late warning is worse than a false one.
    pub hazard_dwell_s: f64,
    /// …and below the leaving level this long before it counts as gone.
    pub leave_s: f64,
    /// An object or person is not announced again within this many seconds.
    pub cooldown_s: f64,
    /// A hazard is not announced again within this many seconds.
    pub hazard_cooldown_s: f64,
    /// At most this many labels in a "describe now" sentence.
    pub describe_max: usize,
    /// Frames must be too dark for this long before the user is told.
    pub dark_after_s: f64,
    /// How much the device says on its own.
    pub verbosity: Verbosity,
    /// What to do with labels whose calibration could not validate them.
    pub unvalidated: Unvalidated,
}

/// What the device does with a label calibration could not validate (too few labelled
/// photos showed it to know how often it is right).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unvalidated {
    /// Never say it (the default: a wrong warning is worse than none).
    #[default]
    Silent,
    /// Say it as a guess: "Possibly stairs going down."
    Hedged,
    /// Say it like any other label.
    Speak,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            window_s: 0.6,
            hysteresis_z: 0.75,
            dwell_s: 0.5,
            hazard_dwell_s: 0.0,
            leave_s: 1.5,
            cooldown_s: 30.0,
            hazard_cooldown_s: 10.0,
            describe_max: 4,
            dark_after_s: 2.0,
            verbosity: Verbosity::New,
            unvalidated: Unvalidated::Silent,
        }
    }
}

/// What the engine knows of a label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelInfo {
    /// The label as the bank names it.
    pub label: String,
    /// What kind of thing it is.
    pub category: Category,
    /// Its urgency among labels of the same kind (0–255).
    pub priority: u8,
    /// The sentence spoken when it comes into view.
    pub say: String,
    /// The label's threshold in z units (from the bank's calibration).
    pub z_threshold: f32,
    /// Calibration validated the threshold on labelled photos.
    pub validated: bool,
}

/// A label entering or leaving the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Entered,
    Left,
}

#[derive(Debug, Clone, Default)]
struct Track {
    samples: VecDeque<(f64, f32)>,
    smoothed: f32,
    present: bool,
    above_since: Option<f64>,
    below_since: Option<f64>,
    last_announced: Option<f64>,
}

/// The engine.
#[derive(Debug, Clone)]
pub struct DecisionEngine {
    config: DecisionConfig,
    labels: Vec<LabelInfo>,
    tracks: Vec<Track>,
    scratch: Vec<f32>,
    dark_since: Option<f64>,
    dark_told: bool,
    last_t: f64,
    /// Whether each label may be said on the last frame (matching's precision checks).
    allowed: Vec<bool>,
    /// The labels announced by the last observation.
    announced: Vec<usize>,
    /// People are said by the pose stage ([`people::PeopleSpeech`]): the banks' person labels
    /// are neither announced nor described.
    people_elsewhere: bool,
}

impl DecisionEngine {
    /// An engine for `labels` (in bank order) with `config`.
    pub fn new(config: DecisionConfig, labels: Vec<LabelInfo>) -> Self {
        let labels_len = labels.len();
        DecisionEngine {
            tracks: vec![Track::default(); labels.len()],
            config,
            labels,
            scratch: Vec::new(),
            dark_since: None,
            dark_told: false,
            last_t: 0.0,
            allowed: vec![true; labels_len],
            announced: Vec::new(),
            people_elsewhere: false,
        }
    }

    /// People are announced and described by the pose stage from now on: the banks' person
    /// labels ("person", "person sitting") stay silent, but are still tracked for observers.
    pub fn leave_people_to_pose(&mut self) {
        self.people_elsewhere = true;
    }

    /// The labels it decides about, in bank order.
    pub fn labels(&self) -> &[LabelInfo] {
        &self.labels
    }

    /// The current verbosity.
    pub fn verbosity(&self) -> Verbosity {
        self.config.verbosity
    }

    /// Changes the verbosity (a control).
    pub fn set_verbosity(&mut self, v: Verbosity) {
        self.config.verbosity = v;
    }

    /// The smoothed score of label `i`.
    pub fn smoothed(&self, i: usize) -> f32 {
        self.tracks[i].smoothed
    }

    /// Whether label `i` is currently in view.
    pub fn present(&self, i: usize) -> bool {
        self.tracks[i].present
    }

    /// True while frames are too dark to judge.
    pub fn is_dark(&self) -> bool {
        self.dark_since.is_some()
    }

    fn cooldown(&self, category: Category) -> f64 {
        let base = if category == Category::Hazard {
            self.config.hazard_cooldown_s
        } else {
            self.config.cooldown_s
        };
        if self.config.verbosity == Verbosity::All {
            base / 2.0
        } else {
            base
        }
    }

    fn announces(&self, category: Category) -> bool {
        category == Category::Hazard || self.config.verbosity != Verbosity::Hazards
    }

    /// One observation: `z[i]` is label i's calibrated score at time `t`, every label
    /// allowed to be said.
    pub fn observe(&mut self, t: f64, z: &[f32]) -> Vec<Utterance> {
        self.allowed.iter_mut().for_each(|a| *a = true);
        self.observe_scores(t, z)
    }

    /// One observation from matching: calibrated scores, and which labels pass its precision
    /// checks on this frame ([`Scores::allowed`]). A label that is not allowed still counts as
    /// evidence (its smoothed score and presence, for the home monitor), but is not said.
    pub fn observe_matched(&mut self, t: f64, scores: &Scores) -> Vec<Utterance> {
        for (a, i) in self.allowed.iter_mut().zip(0..) {
            *a = scores.allowed.get(i).copied().unwrap_or(true);
        }
        self.observe_scores(t, &scores.z)
    }

    /// The labels the last observation announced.
    pub fn announced(&self) -> &[usize] {
        &self.announced
    }

    /// Whether label `i` may be said now: matching allows it on the last frame, and it is
    /// validated or the config says to say unvalidated labels.
    fn sayable(&self, i: usize) -> bool {
        self.allowed[i]
            && (self.labels[i].validated || self.config.unvalidated != Unvalidated::Silent)
            && !(self.people_elsewhere && self.labels[i].category == Category::Person)
    }

    /// The sentence of label `i`: hedged when it is unvalidated and the config says so.
    pub fn sentence(&self, i: usize) -> String {
        let info = &self.labels[i];
        if !info.validated && self.config.unvalidated == Unvalidated::Hedged {
            format!("Possibly {}.", info.label)
        } else {
            info.say.clone()
        }
    }

    fn observe_scores(&mut self, t: f64, z: &[f32]) -> Vec<Utterance> {
        self.announced.clear();
        let mut out = Vec::new();
        self.last_t = t;
        if self.dark_since.take().is_some() && self.dark_told {
            self.dark_told = false;
            out.push(Utterance::status("I can see again.", t));
        }
        let (mut entered, mut left) = (Vec::new(), Vec::new());
        for (i, &score) in z.iter().enumerate().take(self.tracks.len()) {
            self.smooth(i, t, score);
            match self.step(i, t) {
                Some(Change::Entered) => entered.push(i),
                Some(Change::Left) => left.push(i),
                None => {}
            }
        }
        self.announce_entered(entered, t, &mut out);
        self.announce_left(&left, t, &mut out);
        out
    }

    /// Adds a score to label `i`'s window and updates its median.
    fn smooth(&mut self, i: usize, t: f64, score: f32) {
        let track = &mut self.tracks[i];
        let score = if score.is_finite() {
            score
        } else {
            f32::NEG_INFINITY
        };
        track.samples.push_back((t, score));
        while track.samples.len() > 1
            && track
                .samples
                .front()
                .is_some_and(|(s, _)| *s < t - self.config.window_s)
        {
            track.samples.pop_front();
        }
        self.scratch.clear();
        self.scratch.extend(track.samples.iter().map(|(_, z)| *z));
        self.scratch.sort_by(f32::total_cmp);
        let n = self.scratch.len();
        track.smoothed = if n % 2 == 1 {
            self.scratch[n / 2]
        } else {
            (self.scratch[n / 2 - 1] + self.scratch[n / 2]) / 2.0
        };
    }

    /// Dwell and hysteresis: whether label `i` enters or leaves the view at `t`.
    fn step(&mut self, i: usize, t: f64) -> Option<Change> {
        let info = &self.labels[i];
        let dwell = if info.category == Category::Hazard {
            self.config.hazard_dwell_s
        } else {
            self.config.dwell_s
        };
        let track = &mut self.tracks[i];
        let s = track.smoothed;
        if !track.present {
            if s < info.z_threshold {
                track.above_since = None;
                return None;
            }
            let since = *track.above_since.get_or_insert(t);
            if t - since < dwell {
                return None;
            }
            track.present = true;
            track.above_since = None;
            Some(Change::Entered)
        } else if s < info.z_threshold - self.config.hysteresis_z {
            let since = *track.below_since.get_or_insert(t);
            if t - since < self.config.leave_s {
                return None;
            }
            track.present = false;
            track.below_since = None;
            Some(Change::Left)
        } else {
            track.below_since = None;
            None
        }
    }

    /// Hazards first, most urgent first, each its own sentence; then one sentence for the
    /// objects and people that came into view. Verbosity and cooldowns apply.
    fn announce_entered(&mut self, mut entered: Vec<usize>, t: f64, out: &mut Vec<Utterance>) {
        entered.sort_by_key(|&i| {
            let l = &self.labels[i];
            std::cmp::Reverse((Kind::of(l.category), l.priority))
        });
        let mut plain = Vec::new();
        for i in entered {
            let info = &self.labels[i];
            if !self.announces(info.category) || !self.sayable(i) {
                continue;
            }
            let cooldown = self.cooldown(info.category);
            let track = &mut self.tracks[i];
            if track.last_announced.is_some_and(|at| t - at < cooldown) {
                continue;
            }
            track.last_announced = Some(t);
            self.announced.push(i);
            if info.category == Category::Hazard {
                out.push(Utterance {
                    text: self.sentence(i),
                    kind: Kind::Hazard,
                    priority: info.priority,
                    t,
                    interrupt: true,
                    earcon: true,
                });
            } else {
                plain.push(i);
            }
        }
        if plain.is_empty() {
            return;
        }
        let labels = plain.iter().map(|&i| &self.labels[i]);
        let kind = labels
            .clone()
            .map(|l| Kind::of(l.category))
            .max()
            .unwrap_or(Kind::Object);
        let priority = labels.map(|l| l.priority).max().unwrap_or(0);
        let text = plain
            .iter()
            .map(|&i| self.sentence(i))
            .collect::<Vec<_>>()
            .join(" ");
        out.push(Utterance {
            text,
            kind,
            priority,
            t,
            interrupt: false,
            earcon: false,
        });
    }

    /// At verbosity `all`, one sentence for the objects and people that left the view.
    fn announce_left(&self, left: &[usize], t: f64, out: &mut Vec<Utterance>) {
        if self.config.verbosity != Verbosity::All {
            return;
        }
        let gone: Vec<String> = left
            .iter()
            .filter(|&&i| self.labels[i].category != Category::Hazard)
            .map(|&i| self.labels[i].label.clone())
            .collect();
        if !gone.is_empty() {
            out.push(Utterance {
                text: format!("No longer in view: {}.", join_and(&gone)),
                kind: Kind::Object,
                priority: 0,
                t,
                interrupt: false,
                earcon: false,
            });
        }
    }

    /// A frame too dark to judge at time `t`. Label tracks are left as they were.
    pub fn observe_dark(&mut self, t: f64) -> Vec<Utterance> {
        self.last_t = t;
        let since = *self.dark_since.get_or_insert(t);
        if !self.dark_told && t - since >= self.config.dark_after_s {
            self.dark_told = true;
            return vec![Utterance::status("I can't see: too dark.", t)];
        }
        Vec::new()
    }

    /// "Describe now": the labels in view as one sentence, most urgent and surest first.
    pub fn describe(&self, t: f64) -> Utterance {
        let mut utterance = Utterance {
            text: String::new(),
            kind: Kind::Describe,
            priority: 0,
            t,
            interrupt: true,
            earcon: false,
        };
        if self.is_dark() {
            utterance.text = "I can't see: too dark.".into();
            return utterance;
        }
        let mut seen: Vec<usize> = (0..self.labels.len())
            .filter(|&i| {
                let tr = &self.tracks[i];
                let passes = tr.present
                    || (!tr.samples.is_empty() && tr.smoothed >= self.labels[i].z_threshold);
                passes && self.sayable(i)
            })
            .collect();
        seen.sort_by(|&a, &b| {
            let (la, lb) = (&self.labels[a], &self.labels[b]);
            Kind::of(lb.category).cmp(&Kind::of(la.category)).then(
                (self.tracks[b].smoothed - lb.z_threshold)
                    .total_cmp(&(self.tracks[a].smoothed - la.z_threshold)),
            )
        });
        seen.truncate(self.config.describe_max.max(1));
        if seen.is_empty() {
            // Nothing passes the precision rule: no guess, a plain answer.
            utterance.text = if self.tracks.iter().all(|t| t.samples.is_empty()) {
                "Nothing to describe yet.".into()
            } else {
                "I'm not sure.".into()
            };
            return utterance;
        }
        let phrases: Vec<String> = seen
            .iter()
            .map(|&i| noun_phrase(&self.labels[i].label))
            .collect();
        utterance.text = format!("I see {}.", join_and(&phrases));
        utterance
    }
}

/// A label the engine said, with its sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Said {
    /// The label's index in bank order.
    pub index: usize,
    /// The sentence spoken for it (its `say`, or the hedged form).
    pub sentence: String,
}

/// What the engine would say if the camera held one image still: the labels announced while
/// the same scores are observed for a window plus the longest dwell. The very code path of a
/// live run ([`DecisionEngine::observe_matched`]), so `classify` and `eval` report what `run`
/// would say. Announcement order: hazards first, then by priority.
pub fn still_scene(config: DecisionConfig, labels: Vec<LabelInfo>, scores: &Scores) -> Vec<Said> {
    still_scene_with_people(config, labels, scores, None).0
}

/// The pose stage's view of one still image, for [`still_scene_with_people`]: the people in
/// view by direction, and where someone lies as after a fall (context veto applied).
#[derive(Debug, Clone)]
pub struct StillPeople {
    /// How people are said (`[people]`).
    pub config: people::PeopleConfig,
    /// The direction of each person in view.
    pub directions: Vec<crate::vision::pose::Direction>,
    /// Where someone lies on the floor, if anyone does.
    pub lying: Option<crate::vision::pose::Direction>,
}

impl StillPeople {
    /// The present people of one pose estimate; `vetoed`: the image context says bed or sofa,
    /// so no one counts as lying on the floor (as the pipeline judges a frame).
    pub fn of(
        config: people::PeopleConfig,
        people: &crate::vision::pose::People,
        vetoed: bool,
    ) -> Self {
        let fallen = people.fallen() && !vetoed;
        StillPeople {
            config,
            directions: people.present().map(|p| p.direction).collect(),
            lying: people
                .present()
                .find(|p| fallen && p.posture == crate::vision::pose::Posture::Lying)
                .map(|p| p.direction),
        }
    }
}

/// [`still_scene`] as `run` with a person model and `people.announce` on: the banks' person
/// labels stay silent, and the pose stage's people sentences ([`people::PeopleSpeech`], same
/// frames) are said instead. Returns the labels said and the people sentences (the lying
/// hazard first); without `people`, the same as [`still_scene`] and no sentences.
pub fn still_scene_with_people(
    config: DecisionConfig,
    labels: Vec<LabelInfo>,
    scores: &Scores,
    people: Option<&StillPeople>,
) -> (Vec<Said>, Vec<Utterance>) {
    /// The replay's frame interval, seconds.
    const STEP_S: f64 = 0.1;
    let mut end = config.window_s + config.dwell_s.max(config.hazard_dwell_s) + STEP_S;
    let mut engine = DecisionEngine::new(config, labels);
    let mut speech = people.map(|p| {
        engine.leave_people_to_pose();
        end = end.max(p.config.dwell_s.max(p.config.lying_dwell_s) + STEP_S);
        people::PeopleSpeech::new(p.config.clone())
    });
    let (mut said, mut sentences) = (Vec::new(), Vec::new());
    let mut t = 0.0;
    while t <= end {
        engine.observe_matched(t, scores);
        for &i in engine.announced() {
            said.push(Said {
                index: i,
                sentence: engine.sentence(i),
            });
        }
        if let (Some(speech), Some(p)) = (speech.as_mut(), people) {
            sentences.extend(speech.observe(t, &p.directions, p.lying));
        }
        t += STEP_S;
    }
    (said, sentences)
}

/// "a bus", "an apple", "stairs": a label as a noun phrase for a sentence.
pub fn noun_phrase(label: &str) -> String {
    let lower = label.to_lowercase();
    let first_word = lower.split_whitespace().next().unwrap_or("");
    let plural = first_word.len() > 3
        && first_word.ends_with('s')
        && !["ss", "us", "is", "os"]
            .iter()
            .any(|e| first_word.ends_with(e));
    let determined = [
        "a ", "an ", "the ", "some ", "two ", "someone", "somebody", "people",
    ]
    .iter()
    .any(|d| lower.starts_with(d));
    if determined || plural {
        label.to_string()
    } else if lower.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {label}")
    } else {
        format!("a {label}")
    }
}

/// "a", "a and b", "a, b and c".
pub fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(label: &str, category: Category) -> LabelInfo {
        LabelInfo {
            label: label.into(),
            category,
            priority: category.default_priority(),
            say: format!("{label}!"),
            z_threshold: 2.0,
            validated: true,
        }
    }

    fn engine(config: DecisionConfig) -> DecisionEngine {
        DecisionEngine::new(
            config,
            vec![
                info("chair", Category::Object),
                info("stairs", Category::Hazard),
                info("person", Category::Person),
            ],
        )
    }

    /// Feeds `z` at `fps` from `from` to `to` seconds; returns what was said, with times.
    fn run(e: &mut DecisionEngine, from: f64, to: f64, fps: f64, z: [f32; 3]) -> Vec<Utterance> {
        let mut out = Vec::new();
        let mut t = from;
        while t < to - 1e-9 {
            out.extend(e.observe(t, &z));
            t += 1.0 / fps;
        }
        out
    }

    #[test]
    fn a_hazard_is_announced_within_half_the_window() {
        let mut e = engine(DecisionConfig::default());
        assert!(run(&mut e, 0.0, 2.0, 10.0, [0.0, 0.0, 0.0]).is_empty());
        let said = run(&mut e, 2.0, 3.0, 10.0, [0.0, 5.0, 0.0]);
        assert_eq!(said.len(), 1);
        let u = &said[0];
        assert_eq!((u.kind, u.interrupt, u.earcon), (Kind::Hazard, true, true));
        assert!(
            u.t - 2.0 <= DecisionConfig::default().window_s / 2.0 + 1e-9,
            "{}",
            u.t
        );
    }

    #[test]
    fn objects_need_dwell_and_are_said_once_while_static() {
        let mut e = engine(DecisionConfig::default());
        let said = run(&mut e, 0.0, 60.0, 5.0, [4.0, 0.0, 0.0]);
        assert_eq!(said.len(), 1, "{said:?}");
        assert_eq!(said[0].text, "chair!");
        assert!(said[0].t >= 0.5);
    }

    #[test]
    fn a_single_noisy_frame_is_not_announced() {
        let mut e = engine(DecisionConfig::default());
        run(&mut e, 0.0, 1.0, 10.0, [0.0; 3]);
        assert!(e.observe(1.0, &[9.0, 9.0, 0.0]).is_empty());
        assert!(run(&mut e, 1.1, 3.0, 10.0, [0.0; 3]).is_empty());
    }

    #[test]
    fn hysteresis_and_cooldown_stop_flapping() {
        let mut e = engine(DecisionConfig::default());
        let mut said = run(&mut e, 0.0, 2.0, 10.0, [3.0, 0.0, 0.0]);
        // Hovering just under the threshold (within the hysteresis) keeps it in view.
        said.extend(run(&mut e, 2.0, 10.0, 10.0, [1.5, 0.0, 0.0]));
        assert!(e.present(0));
        // Gone for real, then back within the cooldown: not repeated.
        said.extend(run(&mut e, 10.0, 14.0, 10.0, [-1.0, 0.0, 0.0]));
        assert!(!e.present(0));
        said.extend(run(&mut e, 14.0, 16.0, 10.0, [3.0, 0.0, 0.0]));
        assert!(e.present(0));
        assert_eq!(said.len(), 1, "{said:?}");
        // After the cooldown it is news again.
        run(&mut e, 16.0, 20.0, 10.0, [-1.0, 0.0, 0.0]);
        let again = run(&mut e, 40.0, 42.0, 10.0, [3.0, 0.0, 0.0]);
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn hazards_come_first_and_alone() {
        let mut e = engine(DecisionConfig {
            dwell_s: 0.0,
            ..Default::default()
        });
        let said = run(&mut e, 0.0, 1.0, 10.0, [5.0, 5.0, 5.0]);
        assert_eq!(said.len(), 2, "{said:?}");
        assert_eq!(said[0].kind, Kind::Hazard);
        assert_eq!(said[1].text, "person! chair!");
        assert_eq!(said[1].kind, Kind::Person);
    }

    #[test]
    fn verbosity_levels() {
        let mut e = engine(DecisionConfig {
            verbosity: Verbosity::Hazards,
            ..Default::default()
        });
        let said = run(&mut e, 0.0, 2.0, 10.0, [5.0, 5.0, 5.0]);
        assert_eq!(said.len(), 1);
        assert_eq!(said[0].kind, Kind::Hazard);
        let mut e = engine(DecisionConfig {
            verbosity: Verbosity::All,
            ..Default::default()
        });
        run(&mut e, 0.0, 2.0, 10.0, [5.0, 0.0, 0.0]);
        let said = run(&mut e, 2.0, 5.0, 10.0, [-3.0, 0.0, 0.0]);
        assert_eq!(said.len(), 1);
        assert!(said[0].text.contains("No longer in view: chair"));
        assert_eq!(Verbosity::All.next(), Verbosity::Hazards);
    }

    #[test]
    fn describe_now_makes_one_sentence() {
        let mut e = engine(DecisionConfig::default());
        assert_eq!(e.describe(0.0).text, "Nothing to describe yet.");
        run(&mut e, 0.0, 2.0, 10.0, [4.0, 0.0, 3.0]);
        assert_eq!(e.describe(2.0).text, "I see a person and a chair.");
        let mut e = engine(DecisionConfig::default());
        run(&mut e, 0.0, 2.0, 10.0, [1.0, 0.0, -1.0]);
        assert_eq!(e.describe(2.0).text, "I'm not sure.");
    }

    #[test]
    fn darkness_is_reported_once_and_recovery_too() {
        let mut e = engine(DecisionConfig::default());
        let mut said = Vec::new();
        for i in 0..50 {
            said.extend(e.observe_dark(i as f64 * 0.1));
        }
        assert_eq!(said.len(), 1);
        assert_eq!(said[0].text, "I can't see: too dark.");
        assert_eq!(e.describe(5.0).text, "I can't see: too dark.");
        let back = e.observe(5.0, &[0.0; 3]);
        assert_eq!(back[0].text, "I can see again.");
    }

    #[test]
    fn nan_scores_do_not_panic_or_announce() {
        let mut e = engine(DecisionConfig::default());
        // Non-finite scores count as "not seen": nothing is said, not even the hazard whose
        // score is +inf, and nothing is in view.
        let said = run(&mut e, 0.0, 2.0, 10.0, [f32::NAN, f32::INFINITY, f32::NAN]);
        assert!(said.is_empty(), "{said:?}");
        assert!(!(0..3).any(|i| e.present(i)));
        // They do not poison the smoothing window: valid frames afterwards are announced as
        // usual, the hazard first.
        let said = run(&mut e, 2.0, 4.0, 10.0, [4.0, 5.0, 0.0]);
        let texts: Vec<_> = said.iter().map(|u| u.text.as_str()).collect();
        assert_eq!(texts, ["stairs!", "chair!"], "{said:?}");
        assert_eq!(said[0].kind, Kind::Hazard);
    }

    #[test]
    fn noun_phrases() {
        assert_eq!(noun_phrase("bus"), "a bus");
        assert_eq!(noun_phrase("apple"), "an apple");
        assert_eq!(noun_phrase("stairs"), "stairs");
        assert_eq!(noun_phrase("glass"), "a glass");
        assert_eq!(noun_phrase("keys"), "keys");
        assert_eq!(noun_phrase("a car coming"), "a car coming");
        assert_eq!(
            join_and(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
    }
}
