//! `clipsight classify`: ranks the banks' labels for each image, one line per image.
//! A bad file is reported (naming it) and the others are still classified; exit 1 then.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use crate::capture::decode::{decode_file, DecodeLimits};
use crate::cli::args::ClassifyArgs;
use crate::cli::{encoder_options, load_model};
use crate::decide::{still_scene, DecisionConfig};
use crate::matching::{rank, Matcher};
use crate::types::Scores;

/// Runs `classify` on the images the arguments name.
pub fn run(args: ClassifyArgs) -> Result<ExitCode> {
    let (bundle, banks, mut embedder) =
        load_model(&args.model, &args.banks, &encoder_options(&args.encoder))?;
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
            .and_then(|img| Ok(embedder.embed((&img).into())?.to_vec()));
        let embedding = match result {
            Ok(embedding) => embedding,
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
            // What `run` would say if the camera held this image still.
            let said: Vec<_> = still_scene(decision, labels.clone(), &scores)
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
            let mut line = serde_json::json!({"image": path, "labels": ranked, "said": said});
            if args.embeddings {
                line["embedding"] = serde_json::json!(embedding);
            }
            writeln!(out, "{line}")?;
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
