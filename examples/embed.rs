//! Prints a bundle's image and text embeddings as JSON, through the runtime's own path
//! (decode → PIL-exact preprocessing → tract), for parity checks against PyTorch
//! (`models/parity_clip.py`).
//!
//! ```text
//! cargo run --release --example embed -- --model DIR [--image F]... [--text T]...
//!     [--texts-json FILE] [--tokens-only] [--dump-pixels DIR]
//! ```
//!
//! Output (stdout, one JSON object): `model`, `load_ms` (per tower), `images` (file,
//! embedding, encode_ms, and with `--dump-pixels` the paths of the normalized `3 × N × N` f32
//! little-endian tensor and of the decoded RGB8 image written there) and `texts` (text, the padded token ids that
//! `TractTextEncoder::tokenize` returns, and the embedding unless `--tokens-only`).
//! Embeddings are the runtime's: L2-normalized.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use clipsight::capture::decode::{decode_file, DecodeLimits};
use clipsight::model::Bundle;
use clipsight::prompts::text_encoder::TractTextEncoder;
use clipsight::vision::preprocess::{PreprocessSpec, Preprocessor};
use clipsight::vision::tract::TractImageEncoder;
use clipsight::vision::ImageEmbedder;

struct Args {
    model: PathBuf,
    images: Vec<PathBuf>,
    texts: Vec<String>,
    tokens_only: bool,
    dump_pixels: Option<PathBuf>,
}

const USAGE: &str = "usage: embed --model DIR [--image F]... [--text T]... [--texts-json FILE] \
                     [--tokens-only] [--dump-pixels DIR]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        model: PathBuf::new(),
        images: Vec::new(),
        texts: Vec::new(),
        tokens_only: false,
        dump_pixels: None,
    };
    let mut model = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--model" => model = Some(PathBuf::from(value("--model")?)),
            "--image" => args.images.push(PathBuf::from(value("--image")?)),
            "--text" => args.texts.push(value("--text")?),
            "--texts-json" => {
                let path = value("--texts-json")?;
                let text = std::fs::read_to_string(&path).with_context(|| path.clone())?;
                let list: Vec<String> = serde_json::from_str(&text)
                    .with_context(|| format!("{path}: expected a JSON array of strings"))?;
                args.texts.extend(list);
            }
            "--tokens-only" => args.tokens_only = true,
            "--dump-pixels" => args.dump_pixels = Some(PathBuf::from(value("--dump-pixels")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    args.model = model.context(USAGE)?;
    Ok(args)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let bundle = Bundle::load(&args.model)?;
    let limits = DecodeLimits::default();
    let mut load_ms = serde_json::Map::new();

    let mut images = Vec::new();
    if !args.images.is_empty() {
        let t = Instant::now();
        let encoder = TractImageEncoder::load(&bundle)?;
        load_ms.insert("image".into(), json!(ms(t)));
        let spec: PreprocessSpec = (&bundle.manifest.image).into();
        let mut embedder = ImageEmbedder::new(spec.clone(), Box::new(encoder))?;
        let mut pre = Preprocessor::new(spec);
        let mut pixels = vec![0f32; pre.output_len()];
        if let Some(dir) = &args.dump_pixels {
            std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
        }
        for (i, path) in args.images.iter().enumerate() {
            let img = decode_file(path, limits)?;
            let t = Instant::now();
            let embedding = embedder.embed((&img).into())?.to_vec();
            let encode_ms = ms(t);
            let mut entry = json!({
                "file": path,
                "width": img.width(),
                "height": img.height(),
                "encode_ms": encode_ms,
                "embedding": embedding,
            });
            if let Some(dir) = &args.dump_pixels {
                pre.run((&img).into(), &mut pixels)?;
                let out = dir.join(format!("{i:04}.f32"));
                let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
                std::fs::write(&out, bytes).with_context(|| out.display().to_string())?;
                entry["pixels"] = json!(out);
                // the decoded, upright RGB8 image (width × height × 3), before preprocessing
                let raw = dir.join(format!("{i:04}.rgb"));
                std::fs::write(&raw, img.as_raw()).with_context(|| raw.display().to_string())?;
                entry["decoded"] = json!(raw);
            }
            images.push(entry);
        }
    }

    let mut texts = Vec::new();
    if !args.texts.is_empty() {
        let t = Instant::now();
        let mut encoder = TractTextEncoder::load(&bundle)?;
        load_ms.insert("text".into(), json!(ms(t)));
        let embeddings = if args.tokens_only {
            None
        } else {
            Some(encoder.embed(&args.texts)?)
        };
        for (i, text) in args.texts.iter().enumerate() {
            let tokens = encoder.tokenize(text)?;
            let mut entry = json!({ "text": text, "ids": tokens.ids });
            if let Some(e) = &embeddings {
                entry["embedding"] = json!(e[i]);
            }
            texts.push(entry);
        }
    }

    let out: Value = json!({
        "model": bundle.manifest.id,
        "load_ms": load_ms,
        "images": images,
        "texts": texts,
    });
    println!("{out}");
    Ok(())
}
