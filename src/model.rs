//! Model bundles: a folder with `model.toml`, two ONNX encoders and a `tokenizer.json`.
//!
//! Input: a directory. Output: a validated [`Bundle`] whose manifest says everything the other
//! stages need (preprocessing, tensor names, tokenizer settings, embedding size, logit scale).
//! Loading checks the sha256 of every file the manifest lists. Failures are [`BundleError`]s
//! that name the file and say what was expected and what was found.

use crate::file_error::FileError;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name inside a bundle directory.
pub const MANIFEST_FILE: &str = "model.toml";
/// The manifest format version this build understands.
pub const MANIFEST_FORMAT: u32 = 1;

/// Errors raised while loading a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A bundle file (the manifest or a file it lists) cannot be opened or read.
    #[error(transparent)]
    Io(#[from] FileError),
    /// `model.toml` is not valid TOML, has unknown keys, or a value is out of range.
    #[error("{path}: invalid manifest: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A file's sha256 differs from the one the manifest lists.
    #[error("{path}: sha256 mismatch: the manifest expects {expected}, the file has {found}")]
    Hash {
        /// The file whose hash differs.
        path: PathBuf,
        /// The lowercase hex sha256 in the manifest.
        expected: String,
        /// The lowercase hex sha256 of the file on disk.
        found: String,
    },
    /// A model file does not have the shape or property the manifest declares.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// `tokenizer.json` cannot be parsed or configured.
    #[error("{path}: cannot load the tokenizer: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizer library's message.
        message: String,
    },
}

/// A model file or graph does not have the shape or property its manifest declares.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {what}: expected {expected}, found {found}")]
pub struct ShapeError {
    /// The model file.
    pub path: PathBuf,
    /// Which property differs (a tensor's name or dimensions).
    pub what: String,
    /// What the manifest declares.
    pub expected: String,
    /// What the file has.
    pub found: String,
}

/// How the image is brought to `size × size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Resize the shorter side to `size`, keeping the aspect ratio, then center-crop.
    Shortest,
    /// Resize both sides to `size`, ignoring the aspect ratio.
    Squash,
}

/// The resampling filter (PIL's antialiased filters, as CLIP's preprocessing uses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Antialiased bicubic (`"bicubic"`, OpenAI CLIP's choice).
    Bicubic,
    /// Antialiased bilinear (`"bilinear"`).
    Bilinear,
}

/// How the text graph pools its token states into one embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The end-of-text token's position (OpenAI CLIP).
    Eot,
    /// The mean over real tokens (needs an attention mask input).
    Mean,
    /// The first token.
    Cls,
}

/// `[image]`: the image encoder and its preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The ONNX file's name inside the bundle.
    pub file: String,
    /// Its sha256, 64 hex digits.
    pub sha256: String,
    /// The graph's pixel input tensor name (`[1, 3, size, size]`, f32).
    pub input: String,
    /// The graph's embedding output tensor name.
    pub output: String,
    /// The square input side in pixels (16..=4096).
    pub size: u32,
    /// How the frame is brought to `size × size`.
    pub resize: ResizeMode,
    /// The resampling filter.
    pub interpolation: Interpolation,
    /// Per-channel (R, G, B) mean subtracted from pixels scaled to 0–1.
    pub mean: [f32; 3],
    /// Per-channel (R, G, B) standard deviation the pixels are divided by (positive).
    pub std: [f32; 3],
}

/// `[text]`: the text encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    /// The ONNX file's name inside the bundle.
    pub file: String,
    /// Its sha256, 64 hex digits.
    pub sha256: String,
    /// The graph's token-id input tensor name (`[batch_size, context_length]`, i64).
    pub input_ids: String,
    /// The attention-mask input's name, if the graph has one (required for mean pooling).
    #[serde(default)]
    pub attention_mask: Option<String>,
    /// The token-type-ids input's name, if the graph has one (BERT-style; fed zeros).
    #[serde(default)]
    pub token_type_ids: Option<String>,
    /// The graph's embedding output tensor name.
    pub output: String,
    /// The fixed batch size the graph is run with, in prompts (1..=1024).
    pub batch_size: usize,
    /// How the graph pools token states into one embedding.
    pub pooling: Pooling,
}

/// `[tokenizer]`: the tokenizer file and how sequences are shaped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSpec {
    /// The `tokenizer.json` file's name inside the bundle.
    pub file: String,
    /// Its sha256, 64 hex digits.
    pub sha256: String,
    /// Every sequence is truncated and padded to this many tokens (2..=4096).
    pub context_length: usize,
    /// The token id used for padding (default 0).
    #[serde(default)]
    pub pad_id: u32,
}

/// `[embedding]`: the shared embedding space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSpec {
    /// The embedding length both encoders produce (1..=65536).
    pub dim: usize,
    /// The factor cosines are multiplied by before a softmax (positive; CLIP's is 100).
    pub logit_scale: f32,
}

/// The parsed `model.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format version; must equal [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The model's name, used in messages and recorded in prompt banks (not empty).
    pub id: String,
    /// Free text about the model (optional).
    #[serde(default)]
    pub description: String,
    /// `[image]`: the image encoder.
    pub image: ImageSpec,
    /// `[text]`: the text encoder.
    pub text: TextSpec,
    /// `[tokenizer]`: the tokenizer.
    pub tokenizer: TokenizerSpec,
    /// `[embedding]`: the shared embedding space.
    pub embedding: EmbeddingSpec,
}

impl Manifest {
    /// Parses and validates a manifest. `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, BundleError> {
        let bad = |message: String| BundleError::Manifest {
            path: path.to_path_buf(),
            message,
        };
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| bad(crate::toml_error::explain(text, &e)))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(bad(format!(
                "format: expected {MANIFEST_FORMAT}, found {}",
                manifest.format
            )));
        }
        if manifest.id.trim().is_empty() {
            return Err(bad("id: must not be empty".into()));
        }
        let image = &manifest.image;
        if !(16..=4096).contains(&image.size) {
            return Err(bad(format!(
                "image.size: expected 16..=4096, found {}",
                image.size
            )));
        }
        for (i, s) in image.std.iter().enumerate() {
            if !(s.is_finite() && *s > 0.0) {
                return Err(bad(format!(
                    "image.std[{i}]: expected a positive number, found {s}"
                )));
            }
        }
        if image.mean.iter().any(|m| !m.is_finite()) {
            return Err(bad("image.mean: expected finite numbers".into()));
        }
        if manifest.text.batch_size == 0 || manifest.text.batch_size > 1024 {
            return Err(bad(format!(
                "text.batch_size: expected 1..=1024, found {}",
                manifest.text.batch_size
            )));
        }
        if manifest.text.pooling == Pooling::Mean && manifest.text.attention_mask.is_none() {
            return Err(bad(
                "text.attention_mask: pooling = \"mean\" needs the attention mask input named"
                    .into(),
            ));
        }
        let ctx = manifest.tokenizer.context_length;
        if !(2..=4096).contains(&ctx) {
            return Err(bad(format!(
                "tokenizer.context_length: expected 2..=4096, found {ctx}"
            )));
        }
        let dim = manifest.embedding.dim;
        if dim == 0 || dim > 65536 {
            return Err(bad(format!(
                "embedding.dim: expected 1..=65536, found {dim}"
            )));
        }
        let scale = manifest.embedding.logit_scale;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(bad(format!(
                "embedding.logit_scale: expected a positive number, found {scale}"
            )));
        }
        for (key, file, hash) in manifest.files() {
            if file.contains('/') || file.contains('\\') || file == ".." || file.is_empty() {
                return Err(bad(format!(
                    "{key}.file: expected a file name inside the bundle, found {file:?}"
                )));
            }
            if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad(format!(
                    "{key}.sha256: expected 64 hex digits, found {hash:?}"
                )));
            }
        }
        Ok(manifest)
    }

    /// `(section, file, sha256)` for every file the manifest lists.
    pub fn files(&self) -> [(&'static str, &str, &str); 3] {
        [
            ("image", &self.image.file, &self.image.sha256),
            ("text", &self.text.file, &self.text.sha256),
            ("tokenizer", &self.tokenizer.file, &self.tokenizer.sha256),
        ]
    }

    /// A fingerprint of the model: the sha256 of its id and its files' hashes. Prompt banks
    /// record it, so a bank made with other weights is refused even under the same id.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.id.as_bytes());
        for (_, _, hash) in self.files() {
            h.update(b"\n");
            h.update(hash.to_ascii_lowercase().as_bytes());
        }
        hex(&h.finalize())
    }
}

/// A loaded, hash-checked bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// Its validated `model.toml`.
    pub manifest: Manifest,
}

/// Identifies a model in messages and banks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    /// The manifest's `id`.
    pub id: String,
    /// The hex sha256 from [`Manifest::fingerprint`].
    pub fingerprint: String,
}

impl fmt::Display for ModelIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = self.fingerprint.get(..12).unwrap_or(&self.fingerprint);
        write!(f, "{} ({short})", self.id)
    }
}

impl Bundle {
    /// Loads `dir/model.toml` and checks the hash of every file it names.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        let dir = dir.as_ref().to_path_buf();
        let manifest_path = dir.join(MANIFEST_FILE);
        let text =
            fs::read_to_string(&manifest_path).map_err(FileError::reading(&manifest_path))?;
        let manifest = Manifest::parse(&text, &manifest_path)?;
        for (_, file, expected) in manifest.files() {
            let path = dir.join(file);
            let found = sha256_file(&path)?;
            if !found.eq_ignore_ascii_case(expected) {
                return Err(BundleError::Hash {
                    path,
                    expected: expected.to_ascii_lowercase(),
                    found,
                });
            }
        }
        Ok(Bundle { dir, manifest })
    }

    /// The model's id and fingerprint.
    pub fn identity(&self) -> ModelIdentity {
        ModelIdentity {
            id: self.manifest.id.clone(),
            fingerprint: self.manifest.fingerprint(),
        }
    }

    /// The image encoder's ONNX file.
    pub fn image_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.image.file)
    }

    /// The text encoder's ONNX file.
    pub fn text_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.text.file)
    }

    /// The `tokenizer.json` file.
    pub fn tokenizer_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.tokenizer.file)
    }
}

/// The hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let io = FileError::reading(path);
    let mut file = fs::File::open(path).map_err(&io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(&io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = r#"
format = 1
id = "test"
[image]
file = "image.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
input = "pixel_values"
output = "image_embeds"
size = 224
resize = "shortest"
interpolation = "bicubic"
mean = [0.5, 0.5, 0.5]
std = [0.5, 0.5, 0.5]
[text]
file = "text.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
input_ids = "input_ids"
output = "text_embeds"
batch_size = 8
pooling = "eot"
[tokenizer]
file = "tokenizer.json"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
context_length = 77
[embedding]
dim = 64
logit_scale = 100.0
"#;

    #[test]
    fn parses_a_valid_manifest() {
        let m = Manifest::parse(EXAMPLE, Path::new("model.toml")).unwrap();
        assert_eq!(m.image.resize, ResizeMode::Shortest);
        assert_eq!(m.text.attention_mask, None);
        assert_eq!(m.tokenizer.pad_id, 0);
        assert_eq!(m.fingerprint().len(), 64);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = EXAMPLE.replace("size = 224", "size = 224\ncrop_pct = 0.9");
        let err = Manifest::parse(&text, Path::new("m/model.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("crop_pct"), "{msg}");
        assert!(msg.contains("m/model.toml"), "{msg}");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        for (from, to, key) in [
            ("resize = \"shortest\"", "resize = \"stretch\"", "stretch"),
            (
                "std = [0.5, 0.5, 0.5]",
                "std = [0.5, 0.0, 0.5]",
                "image.std[1]",
            ),
            ("logit_scale = 100.0", "logit_scale = -1.0", "logit_scale"),
            (
                "file = \"text.onnx\"",
                "file = \"../text.onnx\"",
                "text.file",
            ),
            ("format = 1", "format = 2", "format"),
        ] {
            let text = EXAMPLE.replacen(from, to, 1);
            let msg = Manifest::parse(&text, Path::new("model.toml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(key), "{key}: {msg}");
        }
    }

    #[test]
    fn mean_pooling_needs_a_mask() {
        let text = EXAMPLE.replace("pooling = \"eot\"", "pooling = \"mean\"");
        let msg = Manifest::parse(&text, Path::new("model.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("attention_mask"), "{msg}");
    }

    #[test]
    fn fingerprint_changes_with_weights() {
        let a = Manifest::parse(EXAMPLE, Path::new("a")).unwrap();
        let mut b = a.clone();
        b.image.sha256 = "1".repeat(64);
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
