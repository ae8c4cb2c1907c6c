//! `clipsight eval`: embeds a folder of labelled photos once, then reports what the device
//! would say on them against their labels ([`crate::eval`]), as text or JSON.

use std::process::ExitCode;

use anyhow::Result;

use crate::capture::decode::{decode_file, DecodeLimits};
use crate::cli::args::EvalArgs;
use crate::cli::{encoder_options, load_model, progress_bar};
use crate::decide::DecisionConfig;
use crate::eval::{evaluate, pose_report, read_photos, PoseVerdict, Rate, Report};
use crate::matching::Matcher;
use crate::prompts::calibrate::PrecisionRule;
use crate::types::Scores;
use crate::vision::pose::{context_margin, furniture_veto};

/// Runs the evaluation and prints it.
pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let options = encoder_options(&args.encoder);
    let (_, banks, mut embedder) = load_model(&args.model, &args.banks, &options)?;
    let mut pose = crate::cli::load_person_model(args.person_model.as_deref(), options.threads)?;
    let photos = read_photos(&args.labels)?;
    let bar = progress_bar(photos.len(), "photos");
    let mut embeddings = Vec::with_capacity(photos.len());
    let mut verdicts = Vec::new();
    let mut matcher = Matcher::new(banks.clone());
    let labels = matcher.labels();
    let mut scores = Scores::default();
    for (i, p) in photos.iter().enumerate() {
        let img = decode_file(&p.path, DecodeLimits::default())?;
        let embedding = embedder.embed((&img).into())?.to_vec();
        if let Some(pose) = pose.as_mut() {
            // As classify and run judge it: the pose verdict with the image context.
            matcher.score(&embedding, &mut scores);
            pose.estimate((&img).into())?;
            let vetoed = context_margin(&labels, &scores, pose.manifest())
                .is_some_and(|m| furniture_veto(m, pose.manifest()));
            let people = pose.people();
            verdicts.push(PoseVerdict {
                people: people.present().count(),
                posture: people.present().next().map(|p| p.posture),
                fallen: people.fallen() && !vetoed,
            });
        }
        embeddings.push(embedding);
        bar.set_position(i as u64 + 1);
    }
    bar.finish_and_clear();
    let mut report = evaluate(
        &banks,
        &photos,
        &embeddings,
        args.folds,
        &PrecisionRule::default(),
        DecisionConfig::default(),
    )?;
    if pose.is_some() {
        report.pose = Some(pose_report(&photos, &verdicts));
    }
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if !args.per_photo {
            if let Some(o) = value.as_object_mut() {
                o.remove("per_photo");
            }
        }
        println!("{value}");
    } else {
        print!("{}", to_text(&report, args.per_photo));
    }
    Ok(ExitCode::SUCCESS)
}

fn rate(r: &Rate) -> String {
    match r.rate {
        Some(v) => format!("{v:.3} ({}/{})", r.hits, r.total),
        None => "n/a (0/0)".into(),
    }
}

/// The report as text for a terminal.
pub fn to_text(r: &Report, per_photo: bool) -> String {
    let mut out = String::new();
    let how = match r.folds {
        Some(k) => format!(
            "{k}-fold cross-validated: each fold scored by banks recalibrated on the others"
        ),
        None => "the banks' own calibration (in-sample if these are its photos)".into(),
    };
    out += &format!("{} photos; {how}\n", r.photos);
    out += &format!("precision of what was said   {}\n", rate(&r.precision));
    out += &format!("  said, not checkable here   {}\n", r.unchecked);
    out += &format!("recall of labelled objects   {}\n", rate(&r.label_recall));
    out += &format!(
        "dominant-object recall       {}\n",
        rate(&r.dominant_recall)
    );
    out += &format!(
        "  where a label covers it    {}\n",
        rate(&r.dominant_recall_covered)
    );
    out += &format!(
        "hazard alarms                {} confirmed, {} unconfirmed on {} ordinary photos ({:.1} per 100)\n",
        r.hazard_alarms_confirmed, r.hazard_alarms_unconfirmed, r.ordinary_photos, r.unconfirmed_per_100
    );
    if let Some(p) = &r.pose {
        out += "people and falls (the pose stage, single frames)\n";
        for (what, r) in [
            ("fallen on falls", &p.fallen_recall),
            ("fallen on up, sitting, empty", &p.false_fallen),
            ("fallen on lying in bed", &p.lying_bed_fallen),
            ("people found", &p.people_found),
            ("people on empty rooms", &p.people_on_empty),
            ("posture agrees with class", &p.posture_agrees),
        ] {
            out += &format!("  {what:<29}{}\n", rate(r));
        }
    }
    out += &format!(
        "\n{:<28} {:<8} {:>9} {:>5} {:>5} {:>5} {:>6}  dominant\n",
        "label", "category", "validated", "said", "true", "false", "missed"
    );
    for l in &r.labels {
        let check = if l.checkable { "" } else { " (not checkable)" };
        out += &format!(
            "{:<28} {:<8} {:>9} {:>5} {:>5} {:>5} {:>6}  {}{check}\n",
            l.label,
            l.category,
            if l.validated { "yes" } else { "no" },
            l.said,
            l.correct,
            l.wrong,
            l.missed,
            if l.dominant.total > 0 {
                rate(&l.dominant)
            } else {
                "-".into()
            },
        );
    }
    if per_photo {
        out += "\n";
        for p in &r.per_photo {
            out += &format!(
                "{}  labels [{}]  said [{}]{}\n",
                p.file,
                p.labels.join(", "),
                p.said.join(", "),
                if p.wrong.is_empty() {
                    String::new()
                } else {
                    format!("  WRONG [{}]", p.wrong.join(", "))
                }
            );
        }
    }
    out
}
