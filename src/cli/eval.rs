//! `clipsight eval`: embeds a folder of labelled photos once, then reports what the device
//! would say on them against their labels ([`crate::eval`]), as text or JSON. With `--teach
//! DATASET`, the few-shot teaching study instead ([`crate::eval::teach`]): the data set's
//! crops and the calibration photos are embedded once, then the splits are pure computation.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::capture::decode::{decode_file, DecodeLimits};
use crate::cli::args::EvalArgs;
use crate::cli::{encoder_options, load_model, progress_bar};
use crate::decide::people::PeopleConfig;
use crate::decide::{DecisionConfig, StillPeople};
use crate::eval::teach::{study, text_rows, StudyConfig, StudyReport, Summary};
use crate::eval::yolo::{embed_crops, read_dataset};
use crate::eval::{evaluate, pose_report, read_photos, PoseVerdict, Rate, Report};
use crate::matching::Matcher;
use crate::prompts::build::embed_photos;
use crate::prompts::calibrate::read_references;
use crate::types::Scores;
use crate::vision::pose::{context_margin, furniture_veto};

/// Runs the evaluation and prints it.
pub fn run(args: EvalArgs) -> Result<ExitCode> {
    if let Some(dataset) = &args.teach {
        return run_teach(&args, dataset);
    }
    let options = encoder_options(&args.encoder);
    let (_, banks, mut embedder) = load_model(&args.model, &args.banks, &options)?;
    let mut pose = crate::cli::load_person_model(args.person_model.as_deref(), &options)?;
    let labels_dir = args
        .labels
        .as_deref()
        .context("--labels: the folder of labelled photos")?;
    let photos = read_photos(labels_dir)?;
    let bar = progress_bar(photos.len(), "photos");
    let mut embeddings = Vec::with_capacity(photos.len());
    let mut verdicts = Vec::new();
    let mut still_people = Vec::new();
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
            still_people.push(StillPeople::of(PeopleConfig::default(), people, vetoed));
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
        pose.is_some().then_some(&still_people[..]),
        args.folds,
        &args.rule.rule(),
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
        // True and false only mean something where the labels can confirm or refute.
        let count = |n: usize| match l.checkable {
            true => n.to_string(),
            false => "-".into(),
        };
        out += &format!(
            "{:<28} {:<8} {:>9} {:>5} {:>5} {:>5} {:>6}  {}{check}\n",
            l.label,
            l.category,
            if l.validated { "yes" } else { "no" },
            l.said,
            count(l.correct),
            count(l.wrong),
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

/// The calibration folder of `eval --teach` when `--labels` is not given.
const TEACH_CALIBRATION: &str = "prompts/calibration";

/// `eval --teach DATASET`: the few-shot teaching study.
fn run_teach(args: &EvalArgs, dataset: &Path) -> Result<ExitCode> {
    let options = encoder_options(&args.encoder);
    let (_, banks, mut embedder) = load_model(&args.model, &args.banks, &options)?;
    let data = read_dataset(dataset)?;
    let calibration = args
        .labels
        .clone()
        .unwrap_or_else(|| PathBuf::from(TEACH_CALIBRATION));
    let refs = read_references(&calibration)?;
    let paths: Vec<&Path> = refs.iter().map(|r| r.path.as_path()).collect();
    let bar = progress_bar(paths.len(), "calibration");
    let ref_images = embed_photos(&mut embedder, &paths, &mut |d, _| {
        bar.set_position(d as u64)
    })?;
    bar.finish_and_clear();
    let skip: BTreeSet<usize> = data
        .classes
        .iter()
        .enumerate()
        .filter(|(_, c)| !args.teach_person && c.eq_ignore_ascii_case("person"))
        .map(|(i, _)| i)
        .collect();
    let bar = progress_bar(data.photos.len(), "crops");
    let crops = embed_crops(&mut embedder, &data, &skip, &mut |d, _| {
        bar.set_position(d as u64)
    })?;
    bar.finish_and_clear();
    let text = text_rows(&data.classes, &banks);
    let ids: Vec<String> = data.photos.iter().map(|p| p.id.clone()).collect();
    let config = StudyConfig {
        splits: args.teach_splits,
        labels: args.teach_labels,
        shots: args.teach_shots.clone(),
        rule: args.rule.rule(),
        ..StudyConfig::default()
    };
    let report = study(
        &data.classes,
        &ids,
        &crops,
        &text,
        &refs,
        &ref_images,
        &config,
    )?;
    if args.json {
        println!("{}", serde_json::to_value(&report)?);
    } else {
        print!("{}", teach_text(&report));
    }
    Ok(ExitCode::SUCCESS)
}

fn summary(s: &Summary) -> String {
    format!("{:.3} ± {:.3}  {:.3}", s.mean, s.std, s.p5)
}

/// The teaching study as text for a terminal.
pub fn teach_text(r: &StudyReport) -> String {
    let mut out = format!(
        "teaching study: {} photos, {} crops; {} eligible classes ({}); {} splits of {} labels (seed {}, {} redraws)\n",
        r.photos,
        r.crops,
        r.eligible.len(),
        r.eligible.join(", "),
        r.splits,
        r.labels,
        r.seed,
        r.redraws
    );
    out += &format!(
        "per split: {:.1} test crops of taught labels, {:.1} distractor crops, {:.1} calibration photos\n\n",
        r.mean_test_crops, r.mean_distractors, r.mean_calibration_photos
    );
    out += &format!(
        "{:<10} {:>5}  {:<24} {:<22} {}\n",
        "method", "shots", "top-1 mean ± std  p5", "precision (said)", "recall"
    );
    for m in &r.results {
        let name = match m.k {
            Some(k) => format!("{} K={k}", m.method),
            None => m.method.clone(),
        };
        let shots = m
            .mean_shots
            .map(|s| format!("{s:.2}"))
            .unwrap_or("-".into());
        out += &format!(
            "{name:<10} {shots:>5}  {:<24} {:<22} {}\n",
            summary(&m.top1),
            rate(&m.precision),
            rate(&m.recall)
        );
    }
    out += "\ntaught − text, top-1, paired by split: mean [5 %, 95 %]\n";
    for d in &r.differences {
        out += &format!(
            "  K={:<3} {:+.3} [{:+.3}, {:+.3}]\n",
            d.k, d.top1.mean, d.top1.p5, d.top1.p95
        );
    }
    out
}
