//! People with a place, for the wearable: "Person ahead.", "Two people on your left.",
//! "Someone is lying on the ground ahead." (a hazard).
//!
//! Input: per judged frame, the people the pose stage found in view (each with the third of the
//! frame its box centre is in), and the direction of a person lying as after a fall, if any.
//! A scene (how many people, where) is announced once it has held for `dwell_s`, and the same
//! scene not again within `cooldown_s`; a new scene (one more person, another side) is said
//! when it has held. A person lying on the ground is a hazard: said after `lying_dwell_s`,
//! first, with the earcon, and not again within `lying_cooldown_s`. Every sentence is a
//! template of `[people]` in the config, so the wording can be changed or translated.

use serde::{Deserialize, Serialize};

use crate::types::{Kind, Utterance};
use crate::vision::pose::Direction;

/// Priority of people sentences among objects (the "person" labels of the banks use 60).
const PEOPLE_PRIORITY: u8 = 60;
/// Priority of the lying-person hazard among hazards.
const LYING_PRIORITY: u8 = 250;

/// `[people]`: when and how people are announced (with a person model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeopleConfig {
    /// Announce people on their own; default: on for the wearable, off with `[home]`.
    pub announce: Option<bool>,
    /// One person: `{where}` is the place word.
    pub one: String,
    /// Several: `{count}` is the number in words ("Two"), `{where}` the place word.
    pub many: String,
    /// The hazard: someone lying on the ground.
    pub lying: String,
    /// The place word for the middle third of the view.
    pub ahead: String,
    /// The place word for the left third.
    pub left: String,
    /// The place word for the right third.
    pub right: String,
    /// The place word when people are on more than one side.
    pub around: String,
    /// The counts said as words, from two up; more people than listed are "many".
    pub numbers: Vec<String>,
    /// The word for more people than `numbers` lists.
    pub many_word: String,
    /// A scene must hold this long before it is said.
    pub dwell_s: f64,
    /// The same scene is not said again within this many seconds.
    pub cooldown_s: f64,
    /// Someone must be seen lying this long before the hazard is said.
    pub lying_dwell_s: f64,
    /// The lying hazard is not said again within this many seconds.
    pub lying_cooldown_s: f64,
}

impl Default for PeopleConfig {
    fn default() -> Self {
        let words = [
            "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine", "Ten",
        ];
        PeopleConfig {
            announce: None,
            one: "Person {where}.".into(),
            many: "{count} people {where}.".into(),
            lying: "Someone is lying on the ground {where}.".into(),
            ahead: "ahead".into(),
            left: "on your left".into(),
            right: "on your right".into(),
            around: "around you".into(),
            numbers: words.iter().map(|w| w.to_string()).collect(),
            many_word: "Many".into(),
            dwell_s: 0.5,
            cooldown_s: 15.0,
            lying_dwell_s: 0.4,
            lying_cooldown_s: 30.0,
        }
    }
}

/// Where the people of a scene are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// All in one third of the view.
    One(Direction),
    /// On more than one side.
    Around,
}

/// How many people, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scene {
    count: usize,
    place: Place,
}

impl Scene {
    fn of(directions: &[Direction]) -> Option<Scene> {
        let first = *directions.first()?;
        let place = if directions.iter().all(|&d| d == first) {
            Place::One(first)
        } else {
            Place::Around
        };
        Some(Scene {
            count: directions.len(),
            place,
        })
    }
}

/// Decides what to say about the people in view.
#[derive(Debug, Clone)]
pub struct PeopleSpeech {
    cfg: PeopleConfig,
    /// The scene now (none: nobody in view) and since when.
    current: Option<(Scene, f64)>,
    /// The last scene said, and when.
    said: Option<(Scene, f64)>,
    /// Someone lying, where, and since when.
    lying: Option<(Direction, f64)>,
    /// When the lying hazard was last said.
    lying_said: Option<f64>,
}

impl PeopleSpeech {
    /// A decider with these settings.
    pub fn new(cfg: PeopleConfig) -> Self {
        PeopleSpeech {
            cfg,
            current: None,
            said: None,
            lying: None,
            lying_said: None,
        }
    }

    fn place_word(&self, place: Place) -> &str {
        match place {
            Place::One(Direction::Ahead) => &self.cfg.ahead,
            Place::One(Direction::Left) => &self.cfg.left,
            Place::One(Direction::Right) => &self.cfg.right,
            Place::Around => &self.cfg.around,
        }
    }

    fn sentence(&self, scene: Scene) -> String {
        let place = self.place_word(scene.place);
        if scene.count == 1 {
            return self.cfg.one.replace("{where}", place);
        }
        let count = self
            .cfg
            .numbers
            .get(scene.count - 2)
            .unwrap_or(&self.cfg.many_word);
        self.cfg
            .many
            .replace("{count}", count)
            .replace("{where}", place)
    }

    /// One judged frame at `t`: the directions of the people in view, and where someone lies
    /// as after a fall. Returns what to say, the hazard first.
    pub fn observe(
        &mut self,
        t: f64,
        people: &[Direction],
        lying: Option<Direction>,
    ) -> Vec<Utterance> {
        let mut out = Vec::new();
        // Someone lying on the ground: a hazard.
        self.lying = match (lying, self.lying) {
            (Some(d), Some((_, since))) => Some((d, since)),
            (Some(d), None) => Some((d, t)),
            (None, _) => None,
        };
        if let Some((d, since)) = self.lying {
            let cooled = self
                .lying_said
                .is_none_or(|at| t - at >= self.cfg.lying_cooldown_s);
            if t - since >= self.cfg.lying_dwell_s && cooled {
                self.lying_said = Some(t);
                out.push(Utterance {
                    text: self
                        .cfg
                        .lying
                        .replace("{where}", self.place_word(Place::One(d))),
                    kind: Kind::Hazard,
                    priority: LYING_PRIORITY,
                    t,
                    interrupt: true,
                    earcon: true,
                });
            }
        }
        // The scene: said once it has held, not again while it stays, not within the cooldown.
        let scene = Scene::of(people);
        self.current = match (scene, self.current) {
            (Some(s), Some((c, since))) if s == c => Some((c, since)),
            (Some(s), _) => Some((s, t)),
            (None, _) => None,
        };
        if let Some((scene, since)) = self.current {
            // The same scene again only once it has left and come back after the cooldown.
            let new = match self.said {
                Some((s, at)) => s != scene || (since > at && t - at >= self.cfg.cooldown_s),
                None => true,
            };
            if t - since >= self.cfg.dwell_s && new {
                self.said = Some((scene, t));
                out.push(Utterance {
                    text: self.sentence(scene),
                    kind: Kind::Person,
                    priority: PEOPLE_PRIORITY,
                    t,
                    interrupt: false,
                    earcon: false,
                });
            }
        }
        out
    }

    /// The people in view now, for "describe": "Two people on your left." (none: nobody).
    pub fn describe(&self) -> Option<String> {
        self.current.map(|(scene, _)| self.sentence(scene))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::*;

    /// Feeds `people` (and `lying`) at 10 fps from `t0` for `seconds`; returns what was said.
    fn feed(
        p: &mut PeopleSpeech,
        t0: f64,
        seconds: f64,
        people: &[Direction],
        lying: Option<Direction>,
    ) -> Vec<String> {
        let mut said = Vec::new();
        let mut t = t0;
        while t < t0 + seconds - 1e-9 {
            said.extend(p.observe(t, people, lying).into_iter().map(|u| u.text));
            t += 0.1;
        }
        said
    }

    #[test]
    fn a_person_is_said_with_the_place_once_it_has_held() {
        let mut p = PeopleSpeech::new(PeopleConfig::default());
        assert!(feed(&mut p, 0.0, 0.4, &[Left], None).is_empty());
        assert_eq!(
            feed(&mut p, 0.4, 2.0, &[Left], None),
            ["Person on your left."]
        );
        assert_eq!(p.describe().as_deref(), Some("Person on your left."));
    }

    #[test]
    fn a_count_or_a_side_that_changes_is_said_and_the_same_scene_waits_for_the_cooldown() {
        let mut p = PeopleSpeech::new(PeopleConfig::default());
        assert_eq!(feed(&mut p, 0.0, 2.0, &[Ahead], None), ["Person ahead."]);
        assert_eq!(
            feed(&mut p, 2.0, 2.0, &[Ahead, Ahead], None),
            ["Two people ahead."]
        );
        assert_eq!(
            feed(&mut p, 4.0, 2.0, &[Ahead, Right, Left], None),
            ["Three people around you."]
        );
        // Gone, and back soon with the same scene: the cooldown holds it back...
        assert!(feed(&mut p, 6.0, 1.0, &[], None).is_empty());
        assert_eq!(p.describe(), None);
        assert!(feed(&mut p, 7.0, 5.0, &[Ahead, Right, Left], None).is_empty());
        // ...until it has passed.
        assert_eq!(
            feed(&mut p, 12.0, 10.0, &[Ahead, Right, Left], None),
            ["Three people around you."]
        );
    }

    #[test]
    fn a_flicker_shorter_than_the_dwell_is_not_said() {
        let mut p = PeopleSpeech::new(PeopleConfig::default());
        assert_eq!(feed(&mut p, 0.0, 1.0, &[Ahead], None), ["Person ahead."]);
        // A second person for 0.3 s, then gone again.
        assert!(feed(&mut p, 1.0, 0.3, &[Ahead, Ahead], None).is_empty());
        assert!(feed(&mut p, 1.3, 2.0, &[Ahead], None).is_empty());
    }

    #[test]
    fn someone_lying_is_a_hazard_said_first_with_the_earcon_once_per_cooldown() {
        let mut p = PeopleSpeech::new(PeopleConfig::default());
        let mut said = Vec::new();
        for i in 0..10 {
            said.extend(p.observe(f64::from(i) * 0.1, &[Right], Some(Right)));
        }
        let hazard = said.iter().find(|u| u.kind == Kind::Hazard).unwrap();
        assert_eq!(hazard.text, "Someone is lying on the ground on your right.");
        assert!(hazard.interrupt && hazard.earcon);
        assert_eq!(said.iter().filter(|u| u.kind == Kind::Hazard).count(), 1);
        assert!(feed(&mut p, 1.0, 20.0, &[Right], Some(Right))
            .iter()
            .all(|s| !s.contains("lying")));
        assert_eq!(
            feed(&mut p, 21.0, 11.0, &[Right], Some(Right))
                .iter()
                .filter(|s| s.contains("lying"))
                .count(),
            1
        );
    }

    #[test]
    fn the_wording_comes_from_the_config() {
        let mut p = PeopleSpeech::new(PeopleConfig {
            one: "Eine Person {where}.".into(),
            many: "{count} Personen {where}.".into(),
            ahead: "vorne".into(),
            numbers: vec!["Zwei".into()],
            many_word: "Viele".into(),
            ..PeopleConfig::default()
        });
        assert_eq!(
            feed(&mut p, 0.0, 1.0, &[Ahead], None),
            ["Eine Person vorne."]
        );
        assert_eq!(
            feed(&mut p, 1.0, 1.0, &[Ahead, Ahead], None),
            ["Zwei Personen vorne."]
        );
        assert_eq!(
            feed(&mut p, 2.0, 1.0, &[Ahead, Ahead, Ahead], None),
            ["Viele Personen vorne."]
        );
    }
}
