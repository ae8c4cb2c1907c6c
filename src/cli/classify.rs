//! `clipsight classify`: ranks the banks' labels for each image, one line per image.
//! A bad file is reported (naming it) and the others are still classified; exit 1 then.
//! With `--person-model`, each line also carries the people in view and the pose-only
//! `fallen` flag ([`crate::vision::pose`]).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use crate::capture::decode::{decode_file, DecodeLimits};
use crate::cli::args::ClassifyArgs;
use crate::cli::{encoder_options, load_model};
use crate::decide::people::PeopleConfig;
use crate::decide::{still_scene_with_people, DecisionConfig, StillPeople};
use crate::matching::{rank, Matcher};
use crate::types::Kind;
use crate::types::Scores;
use crate::vision::pose::{context_margin, furniture_veto, People};

/// What the pose stage adds to an image's line.
struct PoseLine {
    /// The present people, for the JSON line.
    people: serde_json::Value,
    /// Pose only: someone lies as after a fall.
    fallen: bool,
    /// The same, for the text line.
    text: String,
    /// What `run` would say of them on a still scene.
    still: StillPeople,
}

/// Rounds to `decimals` places for short JSON numbers (pixels to 1, scores to 3).
fn round(v: f32, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (f64::from(v) * scale).round() / scale
}

fn pose_line(people: &People, vetoed: bool) -> PoseLine {
    let present: Vec<_> = people.present().collect();
    let json = present
        .iter()
        .map(|p| {
            let keypoints: Vec<[f64; 3]> = p
                .keypoints()
                .iter()
                .map(|k| [round(k.x, 1), round(k.y, 1), round(k.score, 3)])
                .collect();
            serde_json::json!({
                "box": p.bbox.map(|v| round(v, 1)),
                "score": round(p.score, 3),
                "posture": p.posture,
                "direction": p.direction,
                "keypoints": keypoints,
            })
        })
        .collect();
    let described: Vec<String> = present
        .iter()
        .map(|p| {
            format!(
                "{} {} {:.2}",
                p.posture.as_str(),
                p.direction.as_str(),
                p.score
            )
        })
        .collect();
    // The image context (models/person/README.md, step 11): lying on a bed or a sofa is not
    // a fall.
    let fallen = people.fallen() && !vetoed;
    PoseLine {
        still: StillPeople::of(PeopleConfig::default(), people, vetoed),
        people: serde_json::Value::Array(json),
        fallen,
        text: format!(
            "people: {}{}",
            if described.is_empty() {
                "none".to_string()
            } else {
                described.join(", ")
            },
            if fallen { "; FALLEN" } else { "" }
        ),
    }
}

/// Classifies every image of `args`, one line each (with people and `fallen` when
/// `--person-model` is given); exit 1 when an image failed.
pub fn run(args: ClassifyArgs) -> Result<ExitCode> {
    let options = encoder_options(&args.encoder);
    let (bundle, banks, mut embedder) = load_model(&args.model, &args.banks, &options)?;
    let mut pose = crate::cli::load_person_model(args.person_model.as_deref(), &options)?;
    let mut matcher = Matcher::new(banks);
    let labels = matcher.labels();
    let decision = DecisionConfig::default();
    let scale = bundle.manifest.embedding.logit_scale;
    let limits = DecodeLimits::default();
    let (mut scores, mut probs) = (Scores::default(), Vec::new());
    let mut failed = 0usize;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in &args.images {
        let result = decode_file(path, limits)
            .map_err(anyhow::Error::from)
            .and_then(|img| {
                let embedding = embedder.embed((&img).into())?.to_vec();
                let people = match pose.as_mut() {
                    Some(pose) => {
                        pose.estimate((&img).into())?;
                        Some(pose)
                    }
                    None => None,
                };
                Ok((embedding, people.is_some()))
            });
        let (embedding, posed) = match result {
            Ok(found) => found,
            Err(e) => {
                failed += 1;
                let message = format!("{e:#}");
                if args.json {
                    let line = serde_json::json!({"image": path, "error": message});
                    writeln!(out, "{line}")?;
                } else {
                    out.flush()?;
                    eprintln!("error: {message}");
                }
                continue;
            }
        };
        matcher.score(&embedding, &mut scores);
        let people = match pose.as_ref().filter(|_| posed) {
            Some(pose) => {
                let vetoed = context_margin(&labels, &scores, pose.manifest())
                    .is_some_and(|m| furniture_veto(m, pose.manifest()));
                Some(pose_line(pose.people(), vetoed))
            }
            None => None,
        };
        let (mut ranked, mut text) = (Vec::new(), Vec::new());
        let mut at = 0;
        for bank in matcher.banks() {
            let range = at..at + bank.len();
            at += bank.len();
            let (cos, z) = (&scores.cosine[range.clone()], &scores.z[range]);
            for r in rank(bank, cos, scale, args.top, &mut probs) {
                let e = &bank.entries[r.index];
                let z = z[r.index];
                text.push(format!("{} {:.3}", r.label, r.score));
                ranked.push(serde_json::json!({
                    "label": r.label,
                    "score": r.score,
                    "z": z,
                    "above_threshold": z >= e.z_threshold(),
                }));
            }
        }
        if args.json {
            // What `run` would say if the camera held this image still (with a person model,
            // people are said by the pose stage instead of the banks' person labels).
            let (bank_said, people_said) = still_scene_with_people(
                decision,
                labels.clone(),
                &scores,
                people.as_ref().map(|p| &p.still),
            );
            let mut said: Vec<_> = bank_said
                .into_iter()
                .map(|s| {
                    let l = &labels[s.index];
                    serde_json::json!({
                        "label": l.label,
                        "category": l.category.as_str(),
                        "sentence": s.sentence,
                    })
                })
                .collect();
            said.extend(people_said.into_iter().map(|u| {
                let (label, category) = match u.kind {
                    Kind::Hazard => ("person lying", "hazard"),
                    _ => ("person", "person"),
                };
                serde_json::json!({"label": label, "category": category, "sentence": u.text})
            }));
            let mut line = serde_json::json!({"image": path, "labels": ranked, "said": said});
            if let Some(p) = &people {
                line["people"] = p.people.clone();
                line["fallen"] = serde_json::json!(p.fallen);
            }
            if args.embeddings {
                line["embedding"] = serde_json::json!(embedding);
            }
            writeln!(out, "{line}")?;
        } else if let Some(p) = &people {
            writeln!(out, "{}: {}; {}", path.display(), text.join(", "), p.text)?;
        } else {
            writeln!(out, "{}: {}", path.display(), text.join(", "))?;
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} images failed", args.images.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
