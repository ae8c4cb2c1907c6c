//! Image decoding with limits: bytes or a file → an upright RGB8 image.
//!
//! Input: an encoded image (JPEG, PNG, WebP, BMP, GIF, TIFF). Output: an [`image::RgbImage`]
//! with the EXIF orientation applied, grayscale expanded and alpha dropped. The header is read
//! first, and an image over the pixel limit is refused before any pixel is decoded; the
//! decoder's allocations are bounded too, so a decompression bomb costs neither time nor
//! memory. Failures are [`DecodeError`]s that name the file.

use crate::file_error::FileError;
use std::io::{BufRead, Cursor, Seek};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

/// Default pixel limit: 50 megapixels (a 8660×5773 photo), far above any camera frame.
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;
/// Default bound on the decoder's allocations, in bytes.
pub const DEFAULT_MAX_ALLOC_BYTES: u64 = 512 * 1024 * 1024;

/// Bounds on what a decoder may read, checked before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Refuse images of more pixels than this, width × height (default [`DEFAULT_MAX_PIXELS`]).
    pub max_pixels: u64,
    /// The most the decoder may allocate, in bytes (default [`DEFAULT_MAX_ALLOC_BYTES`]).
    pub max_alloc_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_pixels: DEFAULT_MAX_PIXELS,
            max_alloc_bytes: DEFAULT_MAX_ALLOC_BYTES,
        }
    }
}

/// Why an image could not be decoded; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file cannot be opened or read.
    #[error(transparent)]
    Io(#[from] FileError),
    /// The path is a directory.
    #[error("{path}: is a directory, not an image")]
    Directory {
        /// The directory's path.
        path: PathBuf,
    },
    /// The file has zero bytes.
    #[error("{path}: empty file")]
    Empty {
        /// The image file.
        path: PathBuf,
    },
    /// The bytes match no supported image format.
    #[error("{path}: not a recognized image format")]
    UnknownFormat {
        /// The image file.
        path: PathBuf,
    },
    /// The header declares more pixels than [`DecodeLimits::max_pixels`]; nothing was decoded.
    #[error("{path}: image too large: {width}×{height} is over the limit of {limit} pixels")]
    TooLarge {
        /// The image file.
        path: PathBuf,
        /// The declared width, in pixels.
        width: u32,
        /// The declared height, in pixels.
        height: u32,
        /// The pixel limit it exceeds.
        limit: u64,
    },
    /// The decoder failed: truncated JPEG, zero-sized image, bad data or over the allocation limit.
    #[error("{path}: cannot decode: {message}")]
    Corrupt {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Decodes the image file at `path`.
pub fn decode_file(path: &Path, limits: DecodeLimits) -> Result<RgbImage, DecodeError> {
    let meta = std::fs::metadata(path).map_err(FileError::reading(path))?;
    if meta.is_dir() {
        return Err(DecodeError::Directory {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(FileError::reading(path))?;
    decode_bytes(&bytes, path, limits)
}

/// Decodes an in-memory image. `path` names it in errors.
pub fn decode_bytes(
    bytes: &[u8],
    path: &Path,
    limits: DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty {
            path: path.to_path_buf(),
        });
    }
    if is_truncated_jpeg(bytes) {
        return Err(DecodeError::Corrupt {
            path: path.to_path_buf(),
            message: "truncated JPEG (no end-of-image marker)".into(),
        });
    }
    decode_reader(Cursor::new(bytes), path, limits)
}

/// How far from the end of a JPEG its end-of-image marker may sit (some writers pad).
const JPEG_EOI_WINDOW: usize = 4096;

/// The JPEG decoder fills a cut-off scan with grey and reports success; a cut file has no
/// end-of-image marker (`FF D9`) near its end, so refuse it rather than describe grey.
fn is_truncated_jpeg(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return false;
    }
    let tail = &bytes[bytes.len().saturating_sub(JPEG_EOI_WINDOW)..];
    !tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

fn decode_reader<R: BufRead + Seek>(
    reader: R,
    path: &Path,
    limits: DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    let corrupt = |e: image::ImageError| DecodeError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut reader = ImageReader::new(reader)
        .with_guessed_format()
        .map_err(FileError::reading(path))?;
    if reader.format().is_none() {
        return Err(DecodeError::UnknownFormat {
            path: path.to_path_buf(),
        });
    }
    let mut lim = Limits::default();
    lim.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(lim);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(DecodeError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt {
            path: path.to_path_buf(),
            message: format!("zero-sized image ({width}×{height})"),
        });
    }
    let orientation = decoder.orientation().map_err(corrupt)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_a_png() {
        let img = decode_bytes(&png(5, 3), Path::new("x.png"), DecodeLimits::default()).unwrap();
        assert_eq!(img.dimensions(), (5, 3));
        assert_eq!(img.get_pixel(4, 2).0, [4, 2, 7]);
    }

    #[test]
    fn refuses_over_the_pixel_limit_before_decoding() {
        let limits = DecodeLimits {
            max_pixels: 10,
            ..Default::default()
        };
        let err = decode_bytes(&png(5, 3), Path::new("big.png"), limits).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::TooLarge {
                width: 5,
                height: 3,
                ..
            }
        ));
        assert!(err.to_string().contains("big.png"));
    }

    #[test]
    fn empty_text_and_truncated_inputs_are_named_errors() {
        let p = Path::new("f.jpg");
        let l = DecodeLimits::default();
        assert!(matches!(
            decode_bytes(b"", p, l),
            Err(DecodeError::Empty { .. })
        ));
        assert!(matches!(
            decode_bytes(b"hello, this is text", p, l),
            Err(DecodeError::UnknownFormat { .. })
        ));
        let mut bytes = png(40, 40);
        bytes.truncate(bytes.len() / 2);
        let err = decode_bytes(&bytes, p, l).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }), "{err}");
        assert!(err.to_string().starts_with("f.jpg: "));
        let img = RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8 * 4, y as u8 * 4, 9]));
        let mut jpg = Cursor::new(Vec::new());
        img.write_to(&mut jpg, image::ImageFormat::Jpeg).unwrap();
        let mut jpg = jpg.into_inner();
        assert!(decode_bytes(&jpg, p, l).is_ok());
        jpg.truncate(jpg.len() * 2 / 3);
        let err = decode_bytes(&jpg, p, l).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A valid PNG of a few dozen bytes whose header claims `width × height` RGB8 pixels: the
    /// signature, an IHDR, one IDAT holding a zlib stream of a single zero byte, an IEND.
    fn png_bomb(width: u32, height: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8; 4], data: &[u8]| {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let start = out.len();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            let crc = crc32(&out[start..]);
            out.extend_from_slice(&crc.to_be_bytes());
        };
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
        chunk(b"IHDR", &ihdr);
        chunk(
            b"IDAT",
            &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
        );
        chunk(b"IEND", &[]);
        out
    }

    /// The width and height in a JPEG's first SOF0/SOF2 segment.
    fn jpeg_size(bytes: &[u8]) -> Option<(u16, u16)> {
        let at = bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xC0] || w == [0xFF, 0xC2])?;
        let be = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        Some((be(at + 7), be(at + 5)))
    }

    const PNG_BOMB: &[u8] = include_bytes!("../../tests/fixtures/bombs/png-100000x100000.png");
    const JPEG_BOMB: &[u8] = include_bytes!("../../tests/fixtures/bombs/jpeg-65500x65500.jpg");

    /// Decompression bombs (issue 8): a tiny file whose header claims 10 gigapixels is refused
    /// from its header, with a `TooLarge` that names the file, before a pixel is decoded.
    #[test]
    fn decompression_bomb_png_is_refused_from_its_header() {
        let bomb = png_bomb(100_000, 100_000);
        assert_eq!(bomb, PNG_BOMB, "the fixture is what png_bomb makes");
        assert!(bomb.len() < 100);
        let err = decode_bytes(&bomb, Path::new("bomb.png"), DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge {
                    width: 100_000,
                    height: 100_000,
                    limit: DEFAULT_MAX_PIXELS,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("bomb.png: image too large"),
            "{err}"
        );
        // Just over the limit is refused too, exactly at it is not (it then fails as corrupt:
        // the IDAT is one byte).
        let over = png_bomb(10_000, 5_001);
        let err = decode_bytes(&over, Path::new("o.png"), DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }), "{err}");
        let at = png_bomb(10_000, 5_000);
        let err = decode_bytes(&at, Path::new("a.png"), DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, DecodeError::Corrupt { .. }), "{err}");
    }

    #[test]
    fn decompression_bomb_jpeg_is_refused_from_its_header() {
        assert_eq!(jpeg_size(JPEG_BOMB), Some((65_500, 65_500)));
        assert!(JPEG_BOMB.len() < 2048);
        let err =
            decode_bytes(JPEG_BOMB, Path::new("bomb.jpg"), DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::TooLarge {
                    width: 65_500,
                    height: 65_500,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("bomb.jpg: image too large"),
            "{err}"
        );
    }

    /// Writes the bomb fixtures (`cargo test -- --ignored write_bomb_fixtures`): the PNG from
    /// `png_bomb`, the JPEG by patching the SOF size of a 16×16 JPEG to 65500×65500.
    #[test]
    #[ignore]
    fn write_bomb_fixtures() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bombs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("png-100000x100000.png"),
            png_bomb(100_000, 100_000),
        )
        .unwrap();
        let img = RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 16, y as u8 * 16, 0]));
        let mut jpg = Cursor::new(Vec::new());
        img.write_to(&mut jpg, image::ImageFormat::Jpeg).unwrap();
        let mut jpg = jpg.into_inner();
        let at = jpg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpg[at + 5..at + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]);
        std::fs::write(dir.join("jpeg-65500x65500.jpg"), jpg).unwrap();
    }

    #[test]
    fn grayscale_and_rgba_become_rgb() {
        let gray = image::GrayImage::from_fn(3, 2, |x, _| image::Luma([x as u8 * 10]));
        let mut buf = Cursor::new(Vec::new());
        gray.write_to(&mut buf, image::ImageFormat::Png).unwrap();
        let img = decode_bytes(buf.get_ref(), Path::new("g.png"), DecodeLimits::default()).unwrap();
        assert_eq!(img.get_pixel(2, 1).0, [20, 20, 20]);
        let rgba = image::RgbaImage::from_pixel(2, 2, image::Rgba([1, 2, 3, 0]));
        let mut buf = Cursor::new(Vec::new());
        rgba.write_to(&mut buf, image::ImageFormat::Png).unwrap();
        let img = decode_bytes(buf.get_ref(), Path::new("a.png"), DecodeLimits::default()).unwrap();
        assert_eq!(img.get_pixel(1, 1).0, [1, 2, 3]);
    }
}
