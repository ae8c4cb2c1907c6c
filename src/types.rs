//! The data handed from stage to stage: a captured [`Frame`], an [`RgbView`] of its pixels, a
//! label's [`Category`], the [`Utterance`]s the decision stage hands to speech (with their
//! [`Kind`]), and the user's [`Control`] commands. Plain data, no behaviour beyond parsing
//! and naming.

use image::RgbImage;

use crate::vision::preprocess::PreprocessError;
use serde::{Deserialize, Serialize};

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Counts frames from the source's start, bad frames included.
    pub seq: u64,
    /// Seconds since the source started, on its clock (replay time for a folder).
    pub t: f64,
    /// The pixels, RGB8.
    pub image: RgbImage,
}

/// A borrowed packed RGB8 image.
#[derive(Debug, Clone, Copy)]
pub struct RgbView<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Packed RGB8 rows, `width × height × 3` bytes.
    pub pixels: &'a [u8],
}

impl<'a> RgbView<'a> {
    /// A view of `pixels`, checked against the size.
    pub fn new(width: u32, height: u32, pixels: &'a [u8]) -> Result<Self, PreprocessError> {
        if width == 0 || height == 0 {
            return Err(PreprocessError::Empty { width, height });
        }
        let expected = width as usize * height as usize * 3;
        if pixels.len() != expected {
            return Err(PreprocessError::BadPixels {
                width,
                height,
                expected,
                found: pixels.len(),
            });
        }
        Ok(RgbView {
            width,
            height,
            pixels,
        })
    }
}

/// What kind of thing a label is; it decides urgency and wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// An everyday object ("a chair").
    Object,
    /// A hazard to warn about at once ("stairs going down").
    Hazard,
    /// A person's state ("lying on the floor").
    Person,
}

impl Category {
    /// The name used in prompt sets and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Object => "object",
            Category::Hazard => "hazard",
            Category::Person => "person",
        }
    }

    /// Parses a prompt set's category name.
    pub fn parse(s: &str) -> Option<Category> {
        match s {
            "object" => Some(Category::Object),
            "hazard" => Some(Category::Hazard),
            "person" => Some(Category::Person),
            _ => None,
        }
    }

    /// The priority an entry gets when it names none: hazards first.
    pub fn default_priority(self) -> u8 {
        match self {
            Category::Object => 10,
            Category::Person => 50,
            Category::Hazard => 100,
        }
    }
}

/// What an utterance is, in order of urgency (later is more urgent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An object came into view.
    Object,
    /// A person or a person's state.
    Person,
    /// An answer to "describe".
    Describe,
    /// Teaching and find mode: their prompts, tones and "found".
    Find,
    /// Device status (ready, camera lost, too dark).
    Status,
    /// The home monitor's check-in or alert.
    CheckIn,
    /// A hazard warning: first, with the earcon, interrupting.
    Hazard,
}

impl Kind {
    /// The name in transcripts and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Person => "person",
            Kind::Describe => "describe",
            Kind::Find => "find",
            Kind::Status => "status",
            Kind::CheckIn => "checkin",
            Kind::Hazard => "hazard",
        }
    }

    /// The kind of a label's announcements.
    pub fn of(category: Category) -> Kind {
        match category {
            Category::Object => Kind::Object,
            Category::Person => Kind::Person,
            Category::Hazard => Kind::Hazard,
        }
    }
}

/// A sentence to speak.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// The sentence.
    pub text: String,
    /// What it is (its urgency class).
    pub kind: Kind,
    /// The label priority from the bank (0 for status and descriptions).
    pub priority: u8,
    /// When it was decided, in the observation clock's seconds.
    pub t: f64,
    /// Stop whatever is being said and say this now.
    pub interrupt: bool,
    /// Play the earcon first.
    pub earcon: bool,
}

impl Utterance {
    /// How urgent it is: its kind first (hazards most), then the label priority. The one
    /// ordering the decision stage, the pipeline and the speech queue all use.
    pub fn urgency(&self) -> (Kind, u8) {
        (self.kind, self.priority)
    }

    /// A device-status sentence.
    pub fn status(text: impl Into<String>, t: f64) -> Utterance {
        Utterance {
            text: text.into(),
            kind: Kind::Status,
            priority: 0,
            t,
            interrupt: false,
            earcon: false,
        }
    }
}

/// A user or caregiver command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    /// Say what is in view now.
    Describe,
    /// Mute or unmute objects and people.
    Mute,
    /// Say the last sentence again.
    Repeat,
    /// Cycle the verbosity.
    Verbosity,
    /// "I am all right": cancels a fall check-in.
    Ok,
    /// A caregiver acknowledges an alert.
    Acknowledge,
    /// Stop the run.
    Quit,
}

/// Where a command came from (the home monitor's events say who cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A key of an input device (a remote, a headset, a GPIO button).
    Key,
    /// The local control socket (`clipsight control`).
    Socket,
    /// Keys typed on the terminal's standard input.
    Stdin,
}

/// Who sent a command to the home monitor (its records say who cancelled or acknowledged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandSource {
    /// The evdev button near the person (or a key or the terminal of the device).
    Button,
    /// The local control socket.
    Socket,
    /// The MQTT `set` topic.
    Mqtt,
    /// The program itself (tests, the pipeline).
    Api,
}

impl CommandSource {
    /// The source's name in records and logs ("button", "socket", "mqtt", "api").
    pub fn as_str(self) -> &'static str {
        match self {
            CommandSource::Button => "button",
            CommandSource::Socket => "socket",
            CommandSource::Mqtt => "mqtt",
            CommandSource::Api => "api",
        }
    }

    /// Whether the command was given at the device, so the person is there and answering.
    pub fn is_local(self) -> bool {
        matches!(self, CommandSource::Button | CommandSource::Socket)
    }
}

/// A command for the home monitor, from the button, the control socket or the MQTT `set` topic.
#[derive(Debug, Clone, PartialEq)]
pub enum HomeCommand {
    /// "I am all right": ends a check-in or an alert.
    Cancel {
        /// Where the command came from.
        source: CommandSource,
    },
    /// A caregiver has seen the alert `id` (every active alert when `None`).
    Acknowledge {
        /// Where the command came from.
        source: CommandSource,
        /// Who acknowledged: a caregiver's name, or the source's name when none was given.
        by: String,
        /// The incident's id; `None`: every active alert.
        id: Option<String>,
    },
    /// No new check-ins or alerts for `seconds` (default from the config, at most a day).
    Mute {
        /// Where the command came from.
        source: CommandSource,
        /// How long, in seconds; `None`: `fall.mute_default_seconds`.
        seconds: Option<f64>,
    },
    /// Ends a mute early.
    Unmute {
        /// Where the command came from.
        source: CommandSource,
    },
}

impl HomeCommand {
    /// The command's name for logs ("cancel", "acknowledge", "mute", "unmute").
    pub fn name(&self) -> &'static str {
        match self {
            HomeCommand::Cancel { .. } => "cancel",
            HomeCommand::Acknowledge { .. } => "acknowledge",
            HomeCommand::Mute { .. } => "mute",
            HomeCommand::Unmute { .. } => "unmute",
        }
    }
}

/// What travels on the one command bus that the pipeline reads: the controls' words (keys,
/// the control socket, stdin) and the home monitor's commands (its button, the MQTT `set`
/// topic). The pipeline acts on the words it knows and hands every command to its observer.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// A control word and where it came from.
    User {
        /// What to do.
        control: Control,
        /// Who asked.
        origin: Origin,
    },
    /// A command for the home monitor.
    Home(HomeCommand),
    /// Teaching and finding the user's own things, with a label.
    Personal {
        /// What to do.
        request: Personal,
        /// Who asked.
        origin: Origin,
    },
}

/// A request about the user's own things (control words with a label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Personal {
    /// `teach <label>`: learn the thing held in front of the camera.
    Teach(String),
    /// `forget <label>`: remove a taught label.
    Forget(String),
    /// `list`: say the taught labels.
    List,
    /// `find <label>`: a tone that quickens as the label comes into view, until it does.
    Find(String),
}

/// The longest label a control word may carry.
pub const MAX_LABEL_CHARS: usize = 64;

/// Parses a control line: a [`Control`] word, or `teach|forget|find <label>` or `list`.
pub fn parse_command(line: &str, origin: Origin) -> Option<Command> {
    if let Some(c) = Control::parse(line) {
        return Some(c.from(origin));
    }
    let line = line.trim();
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let label = rest.trim();
    let valid = !label.is_empty()
        && label.chars().count() <= MAX_LABEL_CHARS
        && !label.chars().any(char::is_control);
    let request = match (word.to_ascii_lowercase().as_str(), valid) {
        ("list", _) if label.is_empty() => Personal::List,
        ("teach", true) => Personal::Teach(label.to_string()),
        ("forget", true) => Personal::Forget(label.to_string()),
        ("find", true) => Personal::Find(label.to_string()),
        _ => return None,
    };
    Some(Command::Personal { request, origin })
}

impl Control {
    /// This control, as asked from `origin`.
    pub fn from(self, origin: Origin) -> Command {
        Command::User {
            control: self,
            origin,
        }
    }

    /// Parses a command word ("describe", "mute", "repeat", "verbosity", "ok", "ack", "quit").
    pub fn parse(word: &str) -> Option<Control> {
        match word.trim().to_ascii_lowercase().as_str() {
            "describe" | "d" => Some(Control::Describe),
            "mute" | "unmute" | "m" => Some(Control::Mute),
            "repeat" | "r" => Some(Control::Repeat),
            "verbosity" | "v" => Some(Control::Verbosity),
            "ok" | "cancel" | "o" => Some(Control::Ok),
            "ack" | "acknowledge" | "a" => Some(Control::Acknowledge),
            "quit" | "q" => Some(Control::Quit),
            _ => None,
        }
    }
}

/// Every loaded label's cosine with the image and its calibrated score (z), in bank order:
/// what [`crate::matching::score`] hands to the decision stage. Buffers are reused.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    /// Cosine of the image with each label's text embedding.
    pub cosine: Vec<f32>,
    /// Each label's calibrated score: standard deviations above its negatives' mean.
    pub z: Vec<f32>,
    /// Whether each label passes matching's precision checks on this frame (it may be said).
    pub allowed: Vec<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_parse_with_their_labels() {
        let p = |l: &str| parse_command(l, Origin::Socket);
        assert_eq!(
            p(" describe "),
            Some(Control::Describe.from(Origin::Socket))
        );
        let personal = |request| Command::Personal {
            request,
            origin: Origin::Socket,
        };
        assert_eq!(
            p("teach  my keys "),
            Some(personal(Personal::Teach("my keys".into())))
        );
        assert_eq!(p("FIND cup"), Some(personal(Personal::Find("cup".into()))));
        assert_eq!(
            p("forget my keys"),
            Some(personal(Personal::Forget("my keys".into())))
        );
        assert_eq!(p("list"), Some(personal(Personal::List)));
        for bad in [
            "teach",
            "teach   ",
            "list all",
            "find\u{7}x",
            "frobnicate keys",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert_eq!(
            p(&format!("teach {}", "k".repeat(MAX_LABEL_CHARS + 1))),
            None
        );
    }
}
