//! The user's own things on the device: `teach`, `forget`, `list` and `find`.
//!
//! Teaching takes the embeddings of the frames the pipeline encodes for a few seconds (dark
//! frames are never encoded, and the change gate lets through only frames that differ),
//! picks the most different ones ([`crate::prompts::teach::pick_frames`]), and turns their
//! mean into a bank row calibrated like any other ([`crate::prompts::teach`]). The personal
//! bank is written atomically with mode 0600, and only embeddings are kept, never frames.
//!
//! Find mode is a Geiger counter: a short tone whose rate and pitch follow the label's
//! smoothed calibrated score, until the label is in view ("Keys found.") or the time runs
//! out ("Stopped looking for keys."). Hazards still interrupt; objects and people are held
//! back while it looks.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crossbeam_channel::Sender;

use super::{Pipeline, RunState, POLL};
use crate::decide::DecisionEngine;
use crate::matching::Matcher;
use crate::model::ModelIdentity;
use crate::prompts::bank::{Bank, BankError};
use crate::prompts::build::embed_photos;
use crate::prompts::calibrate::{read_references, PrecisionRule, Reference};
use crate::prompts::teach::{
    bare_name, found_sentence, learn, pick_frames, prototype, stopped_sentence, taught_entry,
    taught_labels, Lesson,
};
use crate::speech::{SpeechCommand, Tone};
use crate::types::{Category, Kind, Personal as Request, Scores, Utterance};
use crate::vision::ImageEmbedder;

/// `[personal]`: teaching and find mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersonalConfig {
    /// Labelled photos without the user's things, for a taught label's threshold (a folder
    /// with labels.tsv; the package installs one at /usr/share/clipsight/calibration).
    pub calibration: PathBuf,
    /// How long `teach` looks at the thing, in seconds.
    pub teach_s: f64,
    /// At most this many of the frames seen are averaged (the most different ones).
    pub teach_frames: usize,
    /// Fewer usable frames than this and teaching fails aloud.
    pub teach_min_frames: usize,
    /// Find mode gives up after this many seconds.
    pub find_timeout_s: f64,
}

impl Default for PersonalConfig {
    fn default() -> Self {
        PersonalConfig {
            calibration: PathBuf::from("prompts/calibration"),
            teach_s: 4.0,
            teach_frames: 8,
            teach_min_frames: 2,
            find_timeout_s: 60.0,
        }
    }
}

/// The slowest and fastest find-mode tone intervals, and their pitches.
const FIND_SLOW: Duration = Duration::from_millis(1200);
const FIND_FAST: Duration = Duration::from_millis(200);
const FIND_LOW_HZ: f32 = 440.0;
const FIND_HIGH_HZ: f32 = 1320.0;
const FIND_TONE_MS: u32 = 60;
/// One calibration photo is embedded in the background this often (128 photos: about two
/// minutes after start, then never again in the run).
pub const TRICKLE: Duration = Duration::from_secs(1);

/// The personal bank and its settings.
pub struct Personal {
    config: PersonalConfig,
    path: PathBuf,
    model: ModelIdentity,
    /// The bank file exists but cannot be used (another model, or unreadable): it is moved
    /// aside to `<path>.old` before the first write, never overwritten.
    unusable: bool,
    /// The calibration photos (read on first use; an error is kept and said at teach).
    refs: Option<Result<Vec<Reference>, String>>,
    /// The embeddings of the first calibration photos, made a photo at a time.
    images: Vec<Vec<f32>>,
    /// When the last calibration photo was embedded in the background.
    last_trickle: Option<Instant>,
}

/// What loading the personal bank found.
pub struct Loaded {
    /// The personal bank state for the pipeline.
    pub personal: Personal,
    /// The bank to load with the others, if one is usable.
    pub bank: Option<Bank>,
    /// Said once at start when the bank is unusable ("Your taught things need teaching
    /// again: keys, mug.").
    pub notice: Option<String>,
}

impl Personal {
    /// Loads the personal bank at `path` for `model`. A missing file is an empty bank; one
    /// made for another model, or unreadable, is kept on disk, not loaded, and explained.
    pub fn load(config: PersonalConfig, path: PathBuf, model: ModelIdentity) -> Loaded {
        let mut personal = Personal {
            config,
            path,
            model,
            unusable: false,
            refs: None,
            images: Vec::new(),
            last_trickle: None,
        };
        if !personal.path.exists() {
            return Loaded {
                personal,
                bank: None,
                notice: None,
            };
        }
        match Bank::load_for(&personal.path, &personal.model) {
            Ok(bank) => {
                log::info!(
                    "personal bank {}: {}",
                    personal.path.display(),
                    taught_labels(&bank).join(", ")
                );
                Loaded {
                    personal,
                    bank: Some(bank),
                    notice: None,
                }
            }
            Err(e) => {
                personal.unusable = true;
                let notice = match (&e, Bank::load(&personal.path)) {
                    (BankError::ModelMismatch { .. }, Ok(old)) => {
                        let labels: Vec<String> = taught_labels(&old)
                            .iter()
                            .map(|l| bare_name(l).to_string())
                            .collect();
                        log::warn!("{e}; taught labels that need teaching again: {labels:?}");
                        format!(
                            "Your taught things need teaching again: {}.",
                            labels.join(", ")
                        )
                    }
                    _ => {
                        log::error!("{e}");
                        "Your taught things could not be read.".to_string()
                    }
                };
                Loaded {
                    personal,
                    bank: None,
                    notice: Some(notice),
                }
            }
        }
    }

    /// The settings.
    pub fn config(&self) -> &PersonalConfig {
        &self.config
    }

    /// Writes `bank` (or removes the file when `None`): atomically, mode 0600. An unusable
    /// old file is moved aside first.
    fn save(&mut self, bank: Option<&Bank>) -> Result<(), String> {
        if self.unusable {
            let mut old = self.path.clone().into_os_string();
            old.push(".old");
            std::fs::rename(&self.path, &old)
                .map_err(|e| format!("{}: cannot move aside: {e}", self.path.display()))?;
            log::warn!(
                "the unusable personal bank was kept as {}",
                Path::new(&old).display()
            );
            self.unusable = false;
        }
        match bank {
            Some(b) => b.save_private(&self.path).map_err(|e| e.to_string()),
            None => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("{}: {e}", self.path.display()))
                }
                _ => Ok(()),
            },
        }
    }

    /// Turns the frames seen while teaching into a label of `bank` (a new bank when `None`)
    /// and saves it. Embeds the calibration photos on first use (with `embedder`).
    pub fn teach(
        &mut self,
        lesson: &Lesson,
        frames: &[Vec<f32>],
        bank: Option<Bank>,
        embedder: &mut ImageEmbedder,
    ) -> Result<Bank, TeachFailure> {
        let picked = pick_frames(frames, self.config.teach_frames.max(1));
        if picked.len() < self.config.teach_min_frames.max(1) {
            return Err(TeachFailure::TooFewFrames(picked.len()));
        }
        let shots: Vec<Vec<f32>> = picked.iter().map(|&i| frames[i].clone()).collect();
        let row = prototype(&shots).ok_or(TeachFailure::TooFewFrames(0))?;
        let started = Instant::now();
        let missing = self.embed_calibration(embedder, usize::MAX)?;
        if missing > 0 {
            log::info!(
                "embedded the last {missing} calibration photos for teaching in {:.1?}",
                started.elapsed()
            );
        }
        let refs = match &self.refs {
            Some(Ok(refs)) => refs,
            _ => return Err(TeachFailure::Calibration("no calibration photos".into())),
        };
        let images = &self.images;
        let rule = PrecisionRule::default();
        let entry = taught_entry(
            lesson,
            &row,
            shots.len() as u32,
            Vec::new(),
            refs,
            images,
            &rule,
        )
        .map_err(|e| TeachFailure::Calibration(e.to_string()))?;
        let bank = learn(
            bank,
            self.model.clone(),
            rule.describe(refs.len()),
            entry,
            &row,
        )
        .map_err(TeachFailure::Save)?;
        self.save(Some(&bank)).map_err(TeachFailure::Save)?;
        Ok(bank)
    }

    /// Embeds up to `most` more calibration photos; returns how many. Reads the labels file
    /// first if needed.
    fn embed_calibration(
        &mut self,
        embedder: &mut ImageEmbedder,
        most: usize,
    ) -> Result<usize, TeachFailure> {
        let dir = &self.config.calibration;
        let refs = self
            .refs
            .get_or_insert_with(|| read_references(dir).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| TeachFailure::Calibration(e.clone()))?;
        let todo: Vec<&Path> = refs
            .iter()
            .skip(self.images.len())
            .take(most)
            .map(|r| r.path.as_path())
            .collect();
        let n = todo.len();
        match embed_photos(embedder, &todo, &mut |_, _| {}) {
            Ok(images) => {
                self.images.extend(images);
                Ok(n)
            }
            Err(e) => {
                let e = e.to_string();
                self.refs = Some(Err(e.clone()));
                Err(TeachFailure::Calibration(e))
            }
        }
    }

    /// Embeds one more calibration photo, at most every [`TRICKLE`], so that a teach finds
    /// them ready instead of holding the frame loop for all of them at once. Called on the
    /// frame loop's turns; a failure is logged once and said at the next teach.
    pub fn trickle(&mut self, embedder: &mut ImageEmbedder) {
        let due = self.last_trickle.is_none_or(|t| t.elapsed() >= TRICKLE);
        let done = match &self.refs {
            Some(Ok(r)) => r.len() == self.images.len(),
            Some(Err(_)) => true,
            None => false,
        };
        if !due || done {
            return;
        }
        self.last_trickle = Some(Instant::now());
        if let Err(e) = self.embed_calibration(embedder, 1) {
            log::warn!("teaching will not work: calibration photos: {e:?}");
        }
    }

    /// Removes `label` from `bank` and saves the rest (`Some(None)`: nothing is left);
    /// `None` when the bank does not hold the label.
    pub fn forget(&mut self, label: &str, bank: Bank) -> Option<Option<Bank>> {
        bank.position(label)?;
        let rest = bank.without(label);
        if let Err(e) = self.save(rest.as_ref()) {
            log::error!("forget {label:?}: {e}");
        }
        Some(rest)
    }
}

/// Why teaching on the device failed (said aloud, logged in full).
#[derive(Debug)]
pub enum TeachFailure {
    /// Too few usable frames (too dark, or nothing held up).
    TooFewFrames(usize),
    /// The calibration photos cannot be read or embedded.
    Calibration(String),
    /// The bank cannot be built or written.
    Save(String),
}

impl TeachFailure {
    /// What the device says.
    pub fn sentence(&self) -> &'static str {
        match self {
            TeachFailure::TooFewFrames(_) => {
                "I couldn't see it well. Try again, closer and with more light."
            }
            TeachFailure::Calibration(_) | TeachFailure::Save(_) => {
                "Teaching failed. The log says why."
            }
        }
    }
}

/// A teach in progress: frames are collected until `until`.
pub struct Teaching {
    /// What is being taught.
    pub lesson: Lesson,
    /// When collection ends.
    pub until: Instant,
    /// The embeddings of the frames encoded so far.
    pub frames: Vec<Vec<f32>>,
}

/// A find in progress.
pub struct Finding {
    /// The label looked for.
    pub label: String,
    /// Its index among the engine's labels.
    pub index: usize,
    /// When find mode gives up.
    pub until: Instant,
    /// When the next tone is due.
    pub next_tone: Instant,
}

/// What one turn of find mode does.
pub enum FindStep {
    /// Nothing yet.
    Wait,
    /// Play this tone.
    Tone(Tone),
    /// The label is in view: say this and stop.
    Found(Utterance),
    /// Time is up: say this and stop.
    GaveUp(Utterance),
}

impl Finding {
    /// Starts looking for `label` (label `index`) for `timeout_s`.
    pub fn new(label: &str, index: usize, timeout_s: f64) -> Finding {
        let now = Instant::now();
        Finding {
            label: label.to_string(),
            index,
            until: now + Duration::from_secs_f64(timeout_s.max(1.0)),
            next_tone: now,
        }
    }

    /// One turn: `present` and `smoothed_z` are the label's state in the engine,
    /// `z_threshold` its threshold.
    pub fn step(&mut self, present: bool, smoothed_z: f32, z_threshold: f32, t: f64) -> FindStep {
        let now = Instant::now();
        if present {
            return FindStep::Found(find_utterance(found_sentence(&self.label), t));
        }
        if now >= self.until {
            return FindStep::GaveUp(find_utterance(stopped_sentence(&self.label), t));
        }
        if now < self.next_tone {
            return FindStep::Wait;
        }
        let closeness = closeness(smoothed_z, z_threshold);
        let gap = FIND_SLOW.as_secs_f32() - closeness * (FIND_SLOW - FIND_FAST).as_secs_f32();
        self.next_tone = now + Duration::from_secs_f32(gap);
        FindStep::Tone(Tone {
            hz: FIND_LOW_HZ + closeness * (FIND_HIGH_HZ - FIND_LOW_HZ),
            ms: FIND_TONE_MS,
            t,
        })
    }
}

/// How close a score is to its threshold, from 0 (at the negatives' mean or below) to 1 (at
/// the threshold or above).
pub fn closeness(smoothed_z: f32, z_threshold: f32) -> f32 {
    if !smoothed_z.is_finite() || z_threshold <= 0.0 {
        return 0.0;
    }
    (smoothed_z / z_threshold).clamp(0.0, 1.0)
}

/// A find-mode or teaching sentence: said at once, cutting chatter short.
pub fn find_utterance(text: impl Into<String>, t: f64) -> Utterance {
    Utterance {
        text: text.into(),
        kind: Kind::Find,
        priority: 0,
        t,
        interrupt: true,
        earcon: false,
    }
}

/// The lesson for a `teach <label>` command (an object, with the default sentence).
pub fn lesson(label: &str) -> Result<Lesson, String> {
    Lesson::new(label, Category::Object)
}

/// The default place of the personal bank: systemd's state directory for the service
/// (`$STATE_DIRECTORY`, /var/lib/clipsight), else `$XDG_DATA_HOME/clipsight` or
/// `~/.local/share/clipsight` when run by hand. Read at the edge and passed in.
pub fn default_bank_path(
    state_directory: Option<&std::ffi::OsStr>,
    xdg_data_home: Option<&std::ffi::OsStr>,
    home: Option<&std::ffi::OsStr>,
) -> PathBuf {
    const FILE: &str = "personal.safetensors";
    let first = |v: Option<&std::ffi::OsStr>| {
        v.and_then(|s| std::env::split_paths(s).next())
            .filter(|p| p.is_absolute())
    };
    if let Some(dir) = first(state_directory) {
        return dir.join(FILE);
    }
    if let Some(dir) = first(xdg_data_home) {
        return dir.join("clipsight").join(FILE);
    }
    match first(home) {
        Some(h) => h.join(".local/share/clipsight").join(FILE),
        None => PathBuf::from("/var/lib/clipsight").join(FILE),
    }
}

/// The pipeline's side of teaching and finding: the commands, and the turn of the loop that
/// ends a teach and plays find mode's tones.
impl Pipeline {
    /// `teach`, `forget`, `list` and `find`.
    pub(super) fn personal_request(
        &mut self,
        st: &mut RunState,
        request: &Request,
        say: &dyn Fn(Utterance),
    ) {
        let t = st.last_t;
        let Some(personal) = self.personal.as_ref() else {
            say(find_utterance("Teaching and finding are off.", t));
            return;
        };
        match request {
            Request::Teach(label) => match lesson(label) {
                Ok(lesson) => {
                    let until = Instant::now()
                        + Duration::from_secs_f64(personal.config().teach_s.max(0.5));
                    st.finding = None;
                    st.teaching = Some(Teaching {
                        lesson,
                        until,
                        frames: Vec::new(),
                    });
                    say(find_utterance("Hold it in front of the camera.", t));
                }
                Err(e) => {
                    log::warn!("teach: {e}");
                    say(find_utterance("I can't use that name.", t));
                }
            },
            Request::Forget(label) => {
                let bank = self.personal_bank_now();
                let result = match (bank, self.personal.as_mut()) {
                    (Some(bank), Some(p)) => p.forget(label, bank),
                    _ => None,
                };
                match result {
                    Some(rest) => {
                        self.set_personal_bank(st, rest);
                        say(find_utterance(format!("Forgot {label}."), t));
                    }
                    None => say(find_utterance(format!("I wasn't taught {label}."), t)),
                }
            }
            Request::List => {
                let labels = self
                    .personal_bank_now()
                    .map(|b| crate::prompts::teach::taught_labels(&b))
                    .unwrap_or_default();
                let text = match labels.is_empty() {
                    true => "You haven't taught me anything yet.".to_string(),
                    false => format!("You taught me: {}.", labels.join(", ")),
                };
                say(find_utterance(text, t));
            }
            Request::Find(label) => {
                let index = self
                    .engine
                    .labels()
                    .iter()
                    .position(|l| l.label.eq_ignore_ascii_case(label.trim()));
                match index {
                    Some(i) => {
                        let name = self.engine.labels()[i].label.clone();
                        st.teaching = None;
                        st.finding = Some(Finding::new(&name, i, personal.config().find_timeout_s));
                        say(find_utterance(
                            format!("Looking for {}.", crate::prompts::teach::bare_name(&name)),
                            t,
                        ));
                    }
                    None => say(find_utterance(format!("I don't know {label}."), t)),
                }
            }
        }
    }

    /// Every turn of the loop: ends a teach whose time is up, and plays find mode's tones.
    pub(super) fn personal_turn(
        &mut self,
        st: &mut RunState,
        speech: &Sender<SpeechCommand>,
        say: &dyn Fn(Utterance),
    ) {
        let t = st.last_t;
        if let Some(p) = self.personal.as_mut() {
            p.trickle(&mut self.embedder);
        }
        if st
            .teaching
            .as_ref()
            .is_some_and(|x| Instant::now() >= x.until)
        {
            if let Some(teaching) = st.teaching.take() {
                self.finish_teaching(st, teaching, say);
            }
        }
        let Some(finding) = st.finding.as_mut() else {
            return;
        };
        let i = finding.index;
        let threshold = self.engine.labels()[i].z_threshold;
        // Before the first judged frame there is no score yet: the slowest tone.
        let (present, z) = match st.have_scores {
            true => (self.engine.present(i), self.engine.smoothed(i)),
            false => (false, f32::NEG_INFINITY),
        };
        match finding.step(present, z, threshold, t) {
            FindStep::Wait => {}
            FindStep::Tone(tone) => {
                let _ = speech.send_timeout(SpeechCommand::Tone(tone), POLL);
            }
            FindStep::Found(u) | FindStep::GaveUp(u) => {
                st.finding = None;
                say(u);
            }
        }
    }

    fn finish_teaching(&mut self, st: &mut RunState, teaching: Teaching, say: &dyn Fn(Utterance)) {
        let bank = self.personal_bank_now();
        let Some(personal) = self.personal.as_mut() else {
            return;
        };
        let label = teaching.lesson.label.clone();
        match personal.teach(&teaching.lesson, &teaching.frames, bank, &mut self.embedder) {
            Ok(bank) => {
                log::info!(
                    "taught {label:?} from {} frames seen",
                    teaching.frames.len()
                );
                self.set_personal_bank(st, Some(bank));
                say(find_utterance(format!("Learned: {label}."), st.last_t));
            }
            Err(e) => {
                log::error!("teach {label:?}: {e:?}");
                if let TeachFailure::TooFewFrames(n) = e {
                    log::warn!("{n} usable frames of {} seen", teaching.frames.len());
                }
                say(find_utterance(e.sentence(), st.last_t));
            }
        }
    }

    /// The personal bank as loaded now, if any.
    fn personal_bank_now(&self) -> Option<Bank> {
        match self.personal_bank {
            true => self.matcher.banks().last().cloned(),
            false => None,
        }
    }

    /// Swaps the personal bank (or removes it): the matcher and the decision engine start
    /// afresh over the new labels, keeping the verbosity; the next frame is judged anew.
    fn set_personal_bank(&mut self, st: &mut RunState, bank: Option<Bank>) {
        let mut banks = self.matcher.banks().to_vec();
        if self.personal_bank {
            banks.pop();
        }
        self.personal_bank = bank.is_some();
        banks.extend(bank);
        let verbosity = self.engine.verbosity();
        self.matcher = Matcher::new(banks);
        self.engine = DecisionEngine::new(self.config.decision, self.matcher.labels());
        self.engine.set_verbosity(verbosity);
        if self.people.is_some() {
            self.engine.leave_people_to_pose();
        }
        let n = self.engine.labels().len();
        st.present = vec![false; n];
        st.smoothed = vec![0.0; n];
        st.scores = Scores {
            cosine: vec![0.0; n],
            z: vec![0.0; n],
            allowed: vec![false; n],
        };
        st.have_scores = false;
        st.finding = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn the_bank_lives_in_the_state_directory_or_the_users_data() {
        let p = |s, x, h| default_bank_path(s, x, h);
        assert_eq!(
            p(
                Some(OsStr::new("/var/lib/clipsight")),
                None,
                Some(OsStr::new("/root"))
            ),
            PathBuf::from("/var/lib/clipsight/personal.safetensors")
        );
        assert_eq!(
            p(None, None, Some(OsStr::new("/home/ann"))),
            PathBuf::from("/home/ann/.local/share/clipsight/personal.safetensors")
        );
        assert_eq!(
            p(
                None,
                Some(OsStr::new("/x/data")),
                Some(OsStr::new("/home/ann"))
            ),
            PathBuf::from("/x/data/clipsight/personal.safetensors")
        );
    }

    #[test]
    fn tones_quicken_and_rise_as_the_score_nears_the_threshold() {
        let mut f = Finding::new("my keys", 0, 60.0);
        let tone = |f: &mut Finding, z| {
            f.next_tone = Instant::now();
            match f.step(false, z, 3.0, 0.0) {
                FindStep::Tone(t) => (t.hz, f.next_tone - Instant::now()),
                _ => panic!("no tone"),
            }
        };
        let (far_hz, far_gap) = tone(&mut f, -1.0);
        let (mid_hz, mid_gap) = tone(&mut f, 1.5);
        let (near_hz, near_gap) = tone(&mut f, 2.9);
        assert!(far_hz < mid_hz && mid_hz < near_hz);
        assert!(far_gap > mid_gap && mid_gap > near_gap);
        assert!(matches!(f.step(false, 0.0, 3.0, 0.0), FindStep::Wait));
        match f.step(true, 4.0, 3.0, 0.0) {
            FindStep::Found(u) => assert_eq!(u.text, "Keys found."),
            _ => panic!("not found"),
        }
        let mut g = Finding::new("cup", 0, 1.0);
        g.until = Instant::now();
        match g.step(false, 0.0, 3.0, 0.0) {
            FindStep::GaveUp(u) => assert_eq!(u.text, "Stopped looking for cup."),
            _ => panic!("did not give up"),
        }
    }
}
