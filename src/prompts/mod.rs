//! Prompt sets: the TOML files that say what to look for and what to say.
//!
//! Input: TOML text, an array of `[[prompt]]` tables (see the README). Output: a validated
//! [`PromptSet`] with defaults filled in: category `object`, a priority by category, a spoken
//! sentence that contains the label, and the set's (or the built-in) templates. Failures are
//! [`PromptSetError`]s that name the file and the key or label.

pub mod bank;
pub mod build;
pub mod calibrate;
pub mod teach;
pub mod text_encoder;

use crate::file_error::FileError;
use std::collections::HashSet;
use std::path::Path;

use crate::types::Category;
use serde::Deserialize;

/// The templates used when neither the entry nor the set gives any: a short ensemble in the
/// style of the CLIP paper's ImageNet prompts. `{}` stands for the label.
pub const DEFAULT_TEMPLATES: &[&str] = &[
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a blurry photo of a {}.",
    "a dark photo of the {}.",
    "a photo of a {} in the scene.",
];

/// Upper bound on the number of entries in one set (a bank row per entry).
pub const MAX_PROMPTS: usize = 10_000;
/// Upper bound on the templates of one entry.
pub const MAX_TEMPLATES: usize = 256;

/// Why a prompt set cannot be read: the file cannot be read, or is not a valid prompt set
/// (the message names the key or the label).
pub type PromptSetError = FileError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    templates: Option<Vec<String>>,
    #[serde(default)]
    prompt: Vec<RawPrompt>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrompt {
    label: String,
    #[serde(default)]
    category: Option<Category>,
    #[serde(default)]
    priority: Option<u8>,
    #[serde(default)]
    say: Option<String>,
    #[serde(default)]
    templates: Option<Vec<String>>,
    #[serde(default)]
    aliases: Vec<String>,
}

/// One label to look for.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The label.
    pub label: String,
    /// What kind of thing it is.
    pub category: Category,
    /// Higher is more urgent.
    pub priority: u8,
    /// The sentence spoken when the label is announced.
    pub say: String,
    /// The texts embedded and averaged, with `{}` already replaced by the label.
    pub texts: Vec<String>,
    /// Other names of the label in calibration photo labels.
    pub aliases: Vec<String>,
}

/// A validated prompt set.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSet {
    /// The set's name (its `name` key, or the file name).
    pub name: String,
    /// Its labels, in file order.
    pub prompts: Vec<Prompt>,
}

/// The sentence spoken for an entry that gives none. It always contains the label.
pub fn default_sentence(label: &str, category: Category) -> String {
    match category {
        Category::Hazard => format!("Caution: {label}."),
        Category::Object | Category::Person => {
            let mut chars = label.chars();
            match chars.next() {
                Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
                None => String::new(),
            }
        }
    }
}

fn expand(template: &str, label: &str) -> String {
    if template.contains("{}") {
        template.replace("{}", label)
    } else {
        template.to_string()
    }
}

impl PromptSet {
    /// Reads and checks a prompt set file.
    pub fn load(path: &Path) -> Result<Self, PromptSetError> {
        Self::parse(&crate::file_error::read_to_string(path)?, path)
    }

    /// Parses a prompt set. `path` names it in errors; its stem is the default set name.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PromptSetError> {
        let bad = |message: String| FileError::invalid(path, message);
        let raw: RawSet = crate::file_error::parse_toml(text, path)?;
        if raw.prompt.is_empty() {
            return Err(bad("no [[prompt]] entries".into()));
        }
        if raw.prompt.len() > MAX_PROMPTS {
            return Err(bad(format!(
                "{} entries is over the limit of {MAX_PROMPTS}",
                raw.prompt.len()
            )));
        }
        let set_templates = match raw.templates {
            Some(t) if t.is_empty() => return Err(bad("templates: the list is empty".into())),
            Some(t) => t,
            None => DEFAULT_TEMPLATES.iter().map(|s| s.to_string()).collect(),
        };
        let mut seen = HashSet::new();
        let mut prompts = Vec::with_capacity(raw.prompt.len());
        for (i, p) in raw.prompt.into_iter().enumerate() {
            let label = p.label.trim().to_string();
            if label.is_empty() {
                return Err(bad(format!("prompt[{i}].label: must not be empty")));
            }
            if !seen.insert(label.to_lowercase()) {
                return Err(bad(format!("prompt[{i}].label: duplicate label {label:?}")));
            }
            let category = p.category.unwrap_or(Category::Object);
            let templates = match p.templates {
                Some(t) if t.is_empty() => {
                    return Err(bad(format!(
                        "prompt {label:?}: templates: the list is empty"
                    )))
                }
                Some(t) => t,
                None => set_templates.clone(),
            };
            if templates.len() > MAX_TEMPLATES {
                return Err(bad(format!(
                    "prompt {label:?}: {} templates is over the limit of {MAX_TEMPLATES}",
                    templates.len()
                )));
            }
            let texts: Vec<String> = templates.iter().map(|t| expand(t, &label)).collect();
            if texts.iter().any(|t| t.trim().is_empty()) {
                return Err(bad(format!("prompt {label:?}: a template is empty")));
            }
            let say = match p.say {
                Some(s) if s.trim().is_empty() => {
                    return Err(bad(format!("prompt {label:?}: say: must not be empty")))
                }
                Some(s) => s,
                None => default_sentence(&label, category),
            };
            prompts.push(Prompt {
                priority: p.priority.unwrap_or_else(|| category.default_priority()),
                label,
                category,
                say,
                texts,
                aliases: p.aliases,
            });
        }
        let name = raw.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        Ok(PromptSet { name, prompts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PromptSet, PromptSetError> {
        PromptSet::parse(text, Path::new("set.toml"))
    }

    #[test]
    fn label_only_entries_get_defaults() {
        let set = parse("[[prompt]]\nlabel = \"dog\"\n[[prompt]]\nlabel = \"open manhole\"\ncategory = \"hazard\"\n").unwrap();
        assert_eq!(set.name, "set");
        let dog = &set.prompts[0];
        assert_eq!(dog.category, Category::Object);
        assert_eq!(dog.say, "Dog.");
        assert_eq!(dog.texts.len(), DEFAULT_TEMPLATES.len());
        assert!(dog.texts.iter().all(|t| t.contains("dog")));
        let hole = &set.prompts[1];
        assert!(hole.say.contains("open manhole"));
        assert!(hole.priority > dog.priority);
    }

    #[test]
    fn set_and_entry_templates() {
        let set = parse(
            "templates = [\"{} ahead\"]\n[[prompt]]\nlabel = \"stairs\"\n[[prompt]]\nlabel = \"car\"\ntemplates = [\"a car\", \"a {} on the road\"]\nsay = \"Car.\"\npriority = 3\n",
        )
        .unwrap();
        assert_eq!(set.prompts[0].texts, vec!["stairs ahead"]);
        assert_eq!(set.prompts[1].texts, vec!["a car", "a car on the road"]);
        assert_eq!(set.prompts[1].priority, 3);
    }

    #[test]
    fn errors_name_the_problem() {
        for (text, needle) in [
            ("[[prompt]]\nlabel = \"a\"\ncolour = 1\n", "colour"),
            (
                "[[prompt]]\nlabel = \"a\"\ncategory = \"animal\"\n",
                "animal",
            ),
            (
                "[[prompt]]\nlabel = \"a\"\n[[prompt]]\nlabel = \"A\"\n",
                "duplicate",
            ),
            ("[[prompt]]\nlabel = \"  \"\n", "label"),
            ("name = \"x\"\n", "no [[prompt]]"),
            ("[[prompt]]\nlabel = \"a\"\ntemplates = []\n", "templates"),
            ("[[prompt]]\nlabel = \"a\"\npriority = 300\n", "300"),
        ] {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.contains(needle), "{needle}: {msg}");
            assert!(msg.starts_with("set.toml: "), "{msg}");
        }
    }
}
