//! YOLO-format data sets for the teaching study ([`super::teach`]): `classes.txt`, label files
//! of `class xc yc w h` lines relative to the image, the crops of their boxes and their
//! embeddings. A malformed line is an error naming the file and the line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::teach::TeachStudyError;
use crate::capture::decode::{decode_file, DecodeLimits};
use crate::file_error::FileError;
use crate::vision::ImageEmbedder;

/// The class names of a YOLO data set, one per line; line N (from 0) is class N.
pub const CLASSES_FILE: &str = "classes.txt";
/// A box whose shorter side is under this many pixels (in the original image) is not cropped.
pub const MIN_CROP_SIDE: f32 = 64.0;
/// A crop is the box widened by this factor on each axis around its centre.
pub const CROP_PAD: f32 = 1.10;

/// One line of a YOLO label file: a class and a box relative to the image (0 to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YoloBox {
    /// The class id (its line in `classes.txt`, from 0).
    pub class: usize,
    /// The box's centre, x.
    pub xc: f32,
    /// The box's centre, y.
    pub yc: f32,
    /// Its width.
    pub w: f32,
    /// Its height.
    pub h: f32,
    /// Its line in the label file (from 1).
    pub line: usize,
}

/// Parses the text of YOLO label file `path`; class ids must be under `classes`.
pub fn parse_yolo(
    path: &Path,
    text: &str,
    classes: usize,
) -> Result<Vec<YoloBox>, TeachStudyError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // A malformed line is an invalid file, named with the line.
        let bad = |message: String| {
            TeachStudyError::Io(FileError::invalid(
                path,
                format!("line {}: {message}", i + 1),
            ))
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(bad(format!(
                "expected 5 fields `class xc yc w h`, found {}",
                fields.len()
            )));
        }
        let class: usize = fields[0]
            .parse()
            .map_err(|_| bad(format!("class {:?} is not a whole number", fields[0])))?;
        if class >= classes {
            return Err(bad(format!(
                "class {class} is not in classes.txt ({classes} classes)"
            )));
        }
        let mut v = [0f32; 4];
        for (slot, (name, field)) in v
            .iter_mut()
            .zip(["xc", "yc", "w", "h"].iter().zip(&fields[1..]))
        {
            let x: f32 = field
                .parse()
                .map_err(|_| bad(format!("{name} {field:?} is not a number")))?;
            if !(0.0..=1.0).contains(&x) {
                return Err(bad(format!("{name} {field} is outside 0 to 1")));
            }
            *slot = x;
        }
        if v[2] <= 0.0 || v[3] <= 0.0 {
            return Err(bad("the box has no area".into()));
        }
        out.push(YoloBox {
            class,
            xc: v[0],
            yc: v[1],
            w: v[2],
            h: v[3],
            line: i + 1,
        });
    }
    Ok(out)
}

/// A rectangle of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CropBox {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width (> 0).
    pub width: u32,
    /// Height (> 0).
    pub height: u32,
}

/// The crop of box `b` in a `width` × `height` image: `None` when the box's shorter side is
/// under [`MIN_CROP_SIDE`] pixels; otherwise the box widened ×[`CROP_PAD`] on each axis
/// around its centre (outward to whole pixels) and clipped to the image.
pub fn crop_box(b: &YoloBox, width: u32, height: u32) -> Option<CropBox> {
    let (iw, ih) = (width as f32, height as f32);
    let (bw, bh) = (b.w * iw, b.h * ih);
    if bw.min(bh) < MIN_CROP_SIDE {
        return None;
    }
    let span = |centre: f32, size: f32, limit: f32| {
        let half = size * CROP_PAD / 2.0;
        let lo = (centre - half).floor().clamp(0.0, limit);
        let hi = (centre + half).ceil().clamp(0.0, limit);
        // Whole pixels within the image: the casts cannot truncate.
        (hi > lo).then_some((lo as u32, (hi - lo) as u32))
    };
    let (x, w) = span(b.xc * iw, bw, iw)?;
    let (y, h) = span(b.yc * ih, bh, ih)?;
    Some(CropBox {
        x,
        y,
        width: w,
        height: h,
    })
}

/// A photo of the data set.
#[derive(Debug, Clone, PartialEq)]
pub struct YoloPhoto {
    /// Its id: the file name without extension.
    pub id: String,
    /// The image file.
    pub image: PathBuf,
    /// Its boxes (none when it has no label file).
    pub boxes: Vec<YoloBox>,
}

/// A YOLO data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Class names, by id.
    pub classes: Vec<String>,
    /// Photos, by id.
    pub photos: Vec<YoloPhoto>,
}

/// Parses the text of `classes.txt` (`path`): one name per line, none empty.
pub fn parse_classes(path: &Path, text: &str) -> Result<Vec<String>, TeachStudyError> {
    let mut lines: Vec<&str> = text.lines().map(str::trim).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| match l.is_empty() {
            true => Err(TeachStudyError::Io(FileError::invalid(
                path,
                format!("line {}: empty class name", i + 1),
            ))),
            false => Ok(l.to_string()),
        })
        .collect()
}

/// Reads a YOLO data set: `dir/classes.txt`, the images in `dir/images/` (jpg, jpeg, png,
/// webp, bmp), and each image's `dir/labels/<id>.txt` (a missing one: no boxes).
pub fn read_dataset(dir: &Path) -> Result<Dataset, TeachStudyError> {
    let classes_path = dir.join(CLASSES_FILE);
    let classes = parse_classes(
        &classes_path,
        &crate::file_error::read_to_string(&classes_path)?,
    )?;
    let missing = |message: &str| TeachStudyError::Dataset {
        path: dir.to_path_buf(),
        message: message.into(),
    };
    if classes.is_empty() {
        return Err(missing("classes.txt names no class"));
    }
    let images = dir.join("images");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&images)
        .map_err(FileError::reading(&images))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .is_some_and(|e| ["jpg", "jpeg", "png", "webp", "bmp"].contains(&e.as_str()))
        })
        .collect();
    files.sort();
    let mut photos = Vec::with_capacity(files.len());
    for image in files {
        let Some(id) = image.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            continue;
        };
        let label = dir.join("labels").join(format!("{id}.txt"));
        let boxes = match std::fs::read_to_string(&label) {
            Ok(text) => parse_yolo(&label, &text, classes.len())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(FileError::reading(&label)(e).into()),
        };
        photos.push(YoloPhoto { id, image, boxes });
    }
    if photos.is_empty() {
        return Err(missing("no images in images/"));
    }
    Ok(Dataset { classes, photos })
}

/// An embedded crop.
#[derive(Debug, Clone, PartialEq)]
pub struct Crop {
    /// The photo (index into [`Dataset::photos`]).
    pub photo: usize,
    /// The class id.
    pub class: usize,
    /// Where in the photo.
    pub bbox: CropBox,
    /// Its unit-length image embedding.
    pub embedding: Vec<f32>,
}

/// Crops and embeds every box of the data set ([`crop_box`]) except those of the classes in
/// `skip`; `progress(done, total)` after each photo.
pub fn embed_crops(
    embedder: &mut ImageEmbedder,
    data: &Dataset,
    skip: &BTreeSet<usize>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Crop>, TeachStudyError> {
    let mut out = Vec::new();
    for (i, photo) in data.photos.iter().enumerate() {
        let boxes: Vec<&YoloBox> = photo
            .boxes
            .iter()
            .filter(|b| !skip.contains(&b.class))
            .collect();
        if !boxes.is_empty() {
            let img = decode_file(&photo.image, DecodeLimits::default())?;
            for b in boxes {
                let Some(c) = crop_box(b, img.width(), img.height()) else {
                    continue;
                };
                let crop = image::imageops::crop_imm(&img, c.x, c.y, c.width, c.height).to_image();
                let embedding = embedder
                    .embed((&crop).into())
                    .map_err(|source| TeachStudyError::Embed {
                        path: photo.image.clone(),
                        line: b.line,
                        source: Box::new(source),
                    })?
                    .to_vec();
                out.push(Crop {
                    photo: i,
                    class: b.class,
                    bbox: c,
                    embedding,
                });
            }
        }
        progress(i + 1, data.photos.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yolo(xc: f32, yc: f32, w: f32, h: f32) -> YoloBox {
        YoloBox {
            class: 0,
            xc,
            yc,
            w,
            h,
            line: 1,
        }
    }

    #[test]
    fn yolo_lines_parse_and_bad_ones_name_file_and_line() {
        let p = Path::new("labels/1.txt");
        let b = parse_yolo(p, "3 0.5 0.25 0.5 0.1\n\n12 1 1 1 1\n", 80).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].class, b[0].yc, b[0].line), (3, 0.25, 1));
        assert_eq!((b[1].class, b[1].line), (12, 3));
        for (text, what) in [
            ("1 0.5 0.5 0.2\n", "5 fields"),
            ("x 0.5 0.5 0.2 0.2\n", "whole number"),
            ("80 0.5 0.5 0.2 0.2\n", "not in classes.txt"),
            ("1 0.5 nan 0.2 0.2\n", "outside 0 to 1"),
            ("1 0.5 zero 0.2 0.2\n", "not a number"),
            ("1 0.5 0.5 1.2 0.2\n", "outside 0 to 1"),
            ("1 0.5 0.5 0 0.2\n", "no area"),
        ] {
            let e = parse_yolo(p, &format!("0 0.5 0.5 0.1 0.1\n{text}"), 80)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("labels/1.txt: line 2: ") && e.contains(what),
                "{text:?}: {e}"
            );
        }
        let c = Path::new("classes.txt");
        assert_eq!(parse_classes(c, "dog\ncat\n\n").unwrap(), ["dog", "cat"]);
        let e = parse_classes(c, "dog\n\ncat\n").unwrap_err().to_string();
        assert!(e.contains("classes.txt: line 2"), "{e}");
    }

    #[test]
    fn crops_are_padded_clipped_and_not_too_small() {
        // 640×480, a 200×100 box centred at (320, 240): 220×110 around the centre.
        let c = crop_box(&yolo(0.5, 0.5, 200.0 / 640.0, 100.0 / 480.0), 640, 480).unwrap();
        assert_eq!(
            c,
            CropBox {
                x: 210,
                y: 185,
                width: 220,
                height: 110
            }
        );
        // Shorter side 63 px: not cropped; 64: cropped.
        assert!(crop_box(&yolo(0.5, 0.5, 0.5, 63.0 / 480.0), 640, 480).is_none());
        assert!(crop_box(&yolo(0.5, 0.5, 0.5, 64.0 / 480.0), 640, 480).is_some());
        // The whole image stays the whole image; a box at a corner is clipped to it.
        let all = crop_box(&yolo(0.5, 0.5, 1.0, 1.0), 640, 480).unwrap();
        assert_eq!(
            all,
            CropBox {
                x: 0,
                y: 0,
                width: 640,
                height: 480
            }
        );
        let corner = crop_box(&yolo(0.1, 0.9, 0.2, 0.2), 1000, 1000).unwrap();
        assert_eq!(
            corner,
            CropBox {
                x: 0,
                y: 790,
                width: 210,
                height: 210
            }
        );
    }
}
