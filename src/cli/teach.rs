//! `clipsight teach`: a label of the user's own ("my keys") from photos of it, into a
//! personal bank; `--rebuild` teaches a bank's labels again to a new model from kept photos.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cli::args::TeachArgs;
use crate::cli::{encoder_options, load_model, progress_bar};
use crate::model::Bundle;
use crate::prompts::bank::{Bank, Source};
use crate::prompts::build::embed_photos;
use crate::prompts::calibrate::{read_references, PrecisionRule, Reference};
use crate::prompts::teach::{extend, learn, prototype, taught_entry, Lesson};
use crate::types::Category;
use crate::vision::ImageEmbedder;

/// Runs `teach`.
pub fn run(args: TeachArgs) -> Result<ExitCode> {
    let (bundle, _, mut embedder) = load_model(&args.model, &[], &encoder_options(&args.encoder))?;
    let refs = read_references(&args.calibration)?;
    if args.rebuild {
        return rebuild(&args, &bundle, &mut embedder, &refs);
    }
    let label = args.label.as_deref().unwrap_or_default();
    let category = Category::parse(&args.category).unwrap_or(Category::Object);
    let mut lesson = Lesson::new(label, category).map_err(anyhow::Error::msg)?;
    if let Some(say) = &args.say {
        lesson.say = say.trim().to_string();
    }
    let existing = match args.output.exists() {
        true => Some(Bank::load_for(&args.output, &bundle.identity())?),
        false => None,
    };
    let shots = embed_with_bar(&mut embedder, &args.photos, "photos")?;
    let mut row = prototype(&shots).context("the photos' embeddings cancel out")?;
    let mut n = shots.len() as u32;
    let mut kept = Vec::new();
    let before = existing
        .as_ref()
        .and_then(|b| b.position(&lesson.label).map(|i| (b, i)));
    if args.add {
        match before {
            Some((b, i)) => match &b.entries[i].source {
                Source::Image { shots, photos } => {
                    row = extend(b.embedding(i), *shots, &row, n)
                        .context("the old and new photos cancel out")?;
                    n += shots;
                    kept.clone_from(photos);
                }
                Source::Text => bail!(
                    "{}: {:?} is a text label, not a taught one; teach it without --add to \
                     replace it",
                    args.output.display(),
                    lesson.label
                ),
            },
            None => log::warn!("nothing was taught as {:?} before: teaching it anew", label),
        }
    } else if let Some((b, i)) = before {
        forget_photos(&args.output, &b.entries[i].source);
    }
    if args.keep_photos {
        kept.extend(keep_photos(
            &args.output,
            &lesson.label,
            &args.photos,
            kept.len(),
        )?);
    }
    let images = embed_calibration(&mut embedder, &refs)?;
    let rule = PrecisionRule::default();
    let entry = taught_entry(&lesson, &row, n, kept, &refs, &images, &rule)?;
    let (threshold, z) = (entry.threshold, entry.z_threshold());
    let shot_z: Vec<f32> = shots
        .iter()
        .map(|s| entry.z(s.iter().zip(&row).map(|(a, b)| a * b).sum()))
        .collect();
    let bank = learn(
        existing,
        bundle.identity(),
        rule.describe(refs.len()),
        entry,
        &row,
    )
    .map_err(anyhow::Error::msg)?;
    bank.save_private(&args.output)?;
    let (lo, hi) = shot_z
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &z| {
            (a.min(z), b.max(z))
        });
    println!(
        "taught {:?} ({n} photo{}) into {} ({} label{}): says {:?}; threshold {threshold:.4} \
         (z {z:.2}); the photos themselves score z {lo:.2} to {hi:.2}",
        lesson.label,
        if n == 1 { "" } else { "s" },
        args.output.display(),
        bank.len(),
        if bank.len() == 1 { "" } else { "s" },
        lesson.say,
    );
    if hi < z {
        println!(
            "warning: none of the photos reaches the threshold; try closer photos of the thing alone"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn embed_with_bar(
    embedder: &mut ImageEmbedder,
    paths: &[PathBuf],
    what: &str,
) -> Result<Vec<Vec<f32>>> {
    let bar = progress_bar(paths.len(), what);
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = embed_photos(embedder, &refs, &mut |d, _| bar.set_position(d as u64))?;
    bar.finish();
    Ok(out)
}

fn embed_calibration(embedder: &mut ImageEmbedder, refs: &[Reference]) -> Result<Vec<Vec<f32>>> {
    let paths: Vec<PathBuf> = refs.iter().map(|r| r.path.clone()).collect();
    embed_with_bar(embedder, &paths, "calibration")
}

/// The folder where `--keep-photos` copies go for `label`: `BANK.photos/<label>/`.
fn photo_dir(bank: &Path, label: &str) -> (PathBuf, String) {
    let slug: String = label
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    let name = bank.file_name().unwrap_or_default().to_string_lossy();
    let rel = format!("{name}.photos/{slug}");
    (bank.with_file_name(&rel), rel)
}

/// Copies `photos` into the label's photo folder (mode 0700), numbered from `first`; returns
/// their paths relative to the bank's folder.
fn keep_photos(bank: &Path, label: &str, photos: &[PathBuf], first: usize) -> Result<Vec<String>> {
    use std::os::unix::fs::DirBuilderExt;
    let (dir, rel) = photo_dir(bank, label);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("{}: cannot create", dir.display()))?;
    photos
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("jpg");
            let name = format!("{:03}.{ext}", first + i + 1);
            std::fs::copy(p, dir.join(&name))
                .with_context(|| format!("{}: cannot copy to {}", p.display(), dir.display()))?;
            Ok(format!("{rel}/{name}"))
        })
        .collect()
}

/// Deletes the kept photos of a label being replaced.
fn forget_photos(bank: &Path, source: &Source) {
    if let Source::Image { photos, .. } = source {
        for p in photos {
            let _ = std::fs::remove_file(bank.with_file_name(p));
        }
    }
}

/// `teach --rebuild`: every taught label of the bank, taught again to `bundle` from its kept
/// photos. The old bank is kept beside it as `BANK.before-rebuild`.
fn rebuild(
    args: &TeachArgs,
    bundle: &Bundle,
    embedder: &mut ImageEmbedder,
    refs: &[Reference],
) -> Result<ExitCode> {
    let old = Bank::load(&args.output)?;
    let rule = PrecisionRule::default();
    let mut images = None;
    let (mut bank, mut rebuilt, mut lost) = (None, Vec::new(), Vec::new());
    for e in &old.entries {
        let photos = match &e.source {
            Source::Image { photos, .. } if !photos.is_empty() => photos,
            _ => {
                lost.push(e.label.clone());
                continue;
            }
        };
        let paths: Vec<PathBuf> = photos
            .iter()
            .map(|p| args.output.with_file_name(p))
            .collect();
        let shots = embed_with_bar(embedder, &paths, "photos")?;
        let row = prototype(&shots).context("the photos' embeddings cancel out")?;
        if images.is_none() {
            images = Some(embed_calibration(embedder, refs)?);
        }
        let lesson = Lesson {
            label: e.label.clone(),
            say: e.say.clone(),
            category: e.category,
        };
        let entry = taught_entry(
            &lesson,
            &row,
            shots.len() as u32,
            photos.clone(),
            refs,
            images.as_deref().unwrap_or_default(),
            &rule,
        )?;
        bank = Some(
            learn(
                bank,
                bundle.identity(),
                rule.describe(refs.len()),
                entry,
                &row,
            )
            .map_err(anyhow::Error::msg)?,
        );
        rebuilt.push(e.label.clone());
    }
    let Some(bank) = bank else {
        bail!(
            "{}: nothing to rebuild: no label has kept photos (taught without --keep-photos): {}",
            args.output.display(),
            lost.join(", ")
        );
    };
    let mut backup = args.output.clone().into_os_string();
    backup.push(".before-rebuild");
    std::fs::copy(&args.output, &backup)
        .with_context(|| format!("{}: cannot back up", args.output.display()))?;
    bank.save_private(&args.output)?;
    println!(
        "rebuilt {} for model {}: {}",
        args.output.display(),
        bank.model,
        rebuilt.join(", ")
    );
    if !lost.is_empty() {
        println!(
            "not rebuilt (no kept photos; teach them again): {}",
            lost.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
