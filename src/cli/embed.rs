//! `clipsight embed-prompts`: a prompt set → a calibrated prompt bank, with progress bars.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::args::EmbedArgs;
use crate::cli::progress_bar;
use crate::model::Bundle;
use crate::prompts::build::{build_bank, read_vocabulary, Phase};
use crate::prompts::calibrate::read_references;
use crate::prompts::text_encoder::TractTextEncoder;
use crate::prompts::PromptSet;
use crate::vision::encoder::EncoderOptions;
use crate::vision::select::load_embedder;

/// Runs `embed-prompts`: embeds, calibrates and writes the bank.
pub fn run(args: EmbedArgs) -> Result<ExitCode> {
    let bundle = Bundle::load(&args.model)?;
    let set = PromptSet::load(&args.prompts)?;
    let refs = read_references(&args.calibration)?;
    let mut text = TractTextEncoder::load(&bundle)?;
    let mut images = load_embedder(&bundle, &EncoderOptions::default())?;
    let vocabulary = match &args.vocabulary {
        Some(path) => read_vocabulary(path)?,
        None => Vec::new(),
    };
    let n_texts: usize = set.prompts.iter().map(|p| p.texts.len()).sum();
    let prompts_bar = progress_bar(n_texts, "prompts");
    let vocab_bar = progress_bar(vocabulary.len(), "vocab");
    let photos_bar = progress_bar(refs.len(), "photos");
    let (bank, stats) = build_bank(
        &bundle,
        &mut text,
        &mut images,
        &set,
        &vocabulary,
        &refs,
        &args.rule.rule(),
        &mut |phase, done, total| match phase {
            Phase::Prompts => prompts_bar.set_position(done as u64),
            Phase::Vocabulary => {
                vocab_bar.set_length(total as u64);
                vocab_bar.set_position(done as u64)
            }
            Phase::Photos => photos_bar.set_position(done as u64),
        },
    )?;
    prompts_bar.finish();
    vocab_bar.finish();
    photos_bar.finish();
    bank.save(&args.output)?;
    for (p, s) in set.prompts.iter().zip(&stats) {
        let hits = if s.positives > 0 {
            format!(
                "{}/{} calibration photos showing it pass",
                s.hits, s.positives
            )
        } else {
            "no calibration photo shows it".to_string()
        };
        let validated = if s.validated {
            "validated"
        } else {
            "NOT validated (silent by default)"
        };
        log::info!(
            "{:<28} threshold {:.4} (negatives {:.4} ± {:.4}, {} above); {hits}; {validated}",
            p.label,
            s.threshold,
            s.neg_mean,
            s.neg_std,
            s.false_hits
        );
    }
    println!(
        "wrote {} ({} labels, {} prompts, model {})",
        args.output.display(),
        bank.len(),
        n_texts,
        bank.model
    );
    Ok(ExitCode::SUCCESS)
}
