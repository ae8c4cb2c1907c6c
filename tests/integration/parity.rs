//! Parity with the reference implementations: the Rust preprocessing against PIL (as CLIP
//! preprocesses), and tract against onnxruntime on the tiny CLIP-architecture model.

use clipsight::capture::decode::{decode_file, DecodeLimits};
use clipsight::model::{Bundle, Interpolation, ResizeMode};
use clipsight::prompts::text_encoder::TractTextEncoder;
use clipsight::vision::preprocess::{PreprocessSpec, Preprocessor};
use clipsight::vision::tract::TractImageEncoder;
use clipsight::vision::ImageEmbedder;

use crate::common::*;

/// Largest difference allowed between our resize and PIL's on the same decoded pixels, in
/// u8 levels. The algorithm is reproduced exactly, so it is 0.
const SAME_PIXELS_MAX_DIFF: u8 = 0;
/// Largest difference allowed from the JPEG file: image's decoder and libjpeg-turbo differ by
/// a level or two on some pixels before any resize. These bounds are the README's
/// ("Preprocessing"); they hold on the fixture photos, not on every JPEG (models/README.md
/// measures 4 levels on COCO photos).
const JPEG_MAX_DIFF: u8 = 3;
/// Largest mean difference allowed from the JPEG file, in levels.
const JPEG_MEAN_DIFF: f64 = 0.05;

fn tiny() -> Bundle {
    Bundle::load(tiny_model()).unwrap()
}

fn spec_of(entry: &serde_json::Value, bundle: &Bundle) -> PreprocessSpec {
    let mut spec: PreprocessSpec = (&bundle.manifest.image).into();
    spec.resize = match entry["resize"].as_str().unwrap() {
        "shortest" => ResizeMode::Shortest,
        "squash" => ResizeMode::Squash,
        other => panic!("{other}"),
    };
    spec.interpolation = match entry["interpolation"].as_str().unwrap() {
        "bicubic" => Interpolation::Bicubic,
        "bilinear" => Interpolation::Bilinear,
        other => panic!("{other}"),
    };
    spec
}

fn png(rel: &str) -> image::RgbImage {
    image::open(fixtures().join(rel)).unwrap().to_rgb8()
}

/// (max, mean) absolute difference in u8 levels.
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    (max, sum as f64 / a.len() as f64)
}

/// Every reference photo and variant: (photo file, preprocessing entry).
fn cases() -> Vec<(String, serde_json::Value)> {
    let r = reference();
    let mut out: Vec<_> = r["images"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| (v["file"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    for v in r["preprocess_variants"].as_array().unwrap() {
        let file = r["images"][v["photo"].as_str().unwrap()]["file"]
            .as_str()
            .unwrap();
        out.push((file.to_string(), v.clone()));
    }
    out
}

#[test]
fn preprocessing_matches_pil_on_real_photos() {
    let bundle = tiny();
    let mut report = Vec::new();
    for (file, entry) in cases() {
        let img = decode_file(&fixtures().join(&file), DecodeLimits::default()).unwrap();
        let want = png(entry["preprocess_png"].as_str().unwrap());
        let mut pre = Preprocessor::new(spec_of(&entry, &bundle));
        let got = pre.resize_crop((&img).into()).to_vec();
        let (max, mean) = diff(&got, want.as_raw());
        report.push(format!(
            "{file} {}: max {max}, mean {mean:.3}",
            entry["preprocess_png"]
        ));
        let lossless = file.ends_with(".png");
        if lossless {
            assert_eq!(max, SAME_PIXELS_MAX_DIFF, "{report:#?}");
        } else {
            assert!(
                max <= JPEG_MAX_DIFF && mean <= JPEG_MEAN_DIFF,
                "{report:#?}"
            );
        }
    }
    eprintln!("{report:#?}");
}

#[test]
fn resize_is_exact_on_identical_pixels() {
    // Decode differences aside: PIL's own decode of a lossless file, resized by us, must be
    // PIL's result to the level. The RGBA fixture is a PNG (alpha opaque).
    let bundle = tiny();
    let entry = &reference()["images"]["bus-rgba.png"];
    let img = decode_file(
        &fixtures().join("photos/bus-rgba.png"),
        DecodeLimits::default(),
    )
    .unwrap();
    let mut pre = Preprocessor::new(spec_of(entry, &bundle));
    let got = pre.resize_crop((&img).into()).to_vec();
    assert_eq!(diff(&got, png("preprocess/bus-rgba.png").as_raw()).0, 0);
}

#[test]
fn exif_orientation_is_applied() {
    // The file stores the pixels turned a quarter; EXIF orientation 6 turns them back.
    let rotated = decode_file(
        &fixtures().join("photos/bus-exif6.jpg"),
        DecodeLimits::default(),
    )
    .unwrap();
    let want = &reference()["images"]["bus-exif6.jpg"]["displayed_size"];
    let want = (
        want[0].as_u64().unwrap() as u32,
        want[1].as_u64().unwrap() as u32,
    );
    assert_eq!(rotated.dimensions(), want);
    assert!(want.0 > want.1, "the displayed photo is landscape");
}

#[test]
fn image_encoder_matches_onnxruntime() {
    let bundle = tiny();
    let enc = TractImageEncoder::load(&bundle).unwrap();
    let mut emb = ImageEmbedder::new((&bundle.manifest.image).into(), Box::new(enc)).unwrap();
    let mut n = 0;
    for (_, entry) in cases() {
        // The reference input is PIL's preprocessed crop: feed the same pixels.
        let crop = png(entry["preprocess_png"].as_str().unwrap());
        let got = emb.embed((&crop).into()).unwrap().to_vec();
        let want = normalized(&floats(&entry["embedding"]));
        let cos = cosine(&got, &want);
        let max = max_abs_diff(&got, &want);
        assert!(
            cos >= 0.9999 && max <= 1e-4,
            "{}: cos {cos}, max {max}",
            entry["preprocess_png"]
        );
        n += 1;
    }
    assert!(n >= 7);
}

#[test]
fn photos_embed_like_the_reference_from_the_file() {
    // End to end from the JPEG: decoder differences included.
    let bundle = tiny();
    let enc = TractImageEncoder::load(&bundle).unwrap();
    let mut emb = ImageEmbedder::new((&bundle.manifest.image).into(), Box::new(enc)).unwrap();
    for (name, entry) in reference()["images"].as_object().unwrap() {
        let img = decode_file(
            &fixtures().join(entry["file"].as_str().unwrap()),
            DecodeLimits::default(),
        )
        .unwrap();
        let got = emb.embed((&img).into()).unwrap().to_vec();
        let cos = cosine(&got, &floats(&entry["embedding"]));
        assert!(cos >= 0.999, "{name}: {cos}");
    }
}

#[test]
fn tokenizer_matches_the_reference_ids() {
    let enc = TractTextEncoder::load(&tiny()).unwrap();
    for p in reference()["prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        let want: Vec<i64> = p["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let got = enc.tokenize(text).unwrap();
        assert_eq!(got.ids, want, "{text:?}");
        assert_eq!(got.ids.len(), 77);
    }
}

#[test]
fn text_encoder_matches_onnxruntime_in_batches() {
    let mut enc = TractTextEncoder::load(&tiny()).unwrap();
    let prompts = reference()["prompts"].as_array().unwrap();
    let texts: Vec<&str> = prompts
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    // 13 prompts with batch size 8: one full batch and one padded one.
    let got = enc.embed(&texts).unwrap();
    assert_eq!(got.len(), texts.len());
    for (p, g) in prompts.iter().zip(&got) {
        let want = normalized(&floats(&p["embedding"]));
        let cos = cosine(g, &want);
        let max = max_abs_diff(g, &want);
        assert!(
            cos >= 0.9999 && max <= 1e-4,
            "{:?}: cos {cos}, max {max}",
            p["text"]
        );
    }
}
