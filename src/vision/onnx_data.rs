//! Loading an ONNX file without holding its weights twice.
//!
//! tract decodes an ONNX file into its protobuf structs (a copy of every weight) and then
//! builds its tensors from them (a second copy), so loading peaks at twice the file size: a
//! 350 MB ViT-B/32 needs 700 MB before it runs in 370. ONNX's "external data" avoids that:
//! a tensor may say that its bytes lie at an offset of a file, and tract then reads each
//! tensor from there on its own. `weights_by_reference` rewrites the file's protobuf on the
//! fly, without its large initializers' bytes, each replaced by a reference to where those bytes
//! already lie in the file itself. The file on disk is not changed and needs no other form.
//!
//! Only the protobuf wire format is read here (tags, varints, lengths), streaming, so the
//! weights are never in memory at once. Anything unexpected (a truncated field, a group, an
//! initializer already stored outside) leaves the file to tract's own loader.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// Initializers smaller than this stay inline: not worth a read of their own.
const MIN_EXTERNAL: u64 = 4096;

// Field numbers of onnx.proto3.
const MODEL_GRAPH: u64 = 7;
const GRAPH_INITIALIZER: u64 = 5;
const TENSOR_RAW_DATA: u64 = 9;
const TENSOR_EXTERNAL_DATA: u64 = 13;
const TENSOR_DATA_LOCATION: u64 = 14;
const DATA_LOCATION_EXTERNAL: u64 = 1;

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// The ModelProto of the ONNX file at `path` with the raw bytes of each large initializer
/// replaced by an external-data reference to the same file (its name, offset and length), or
/// `None` when no initializer is worth it or the file's layout is not the expected one.
pub(crate) fn weights_by_reference(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let Some(location) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    slim_model_proto(BufReader::with_capacity(1 << 16, file), len, location)
}

/// `weights_by_reference` on any seekable source of `len` bytes, whose references name
/// `location`. `None`: nothing to move, or not the expected layout. Errors are I/O errors.
pub fn slim_model_proto<R: Read + Seek>(
    source: R,
    len: u64,
    location: &str,
) -> io::Result<Option<Vec<u8>>> {
    let mut r = Reader {
        inner: source,
        pos: 0,
    };
    let mut moved = 0;
    match model(&mut r, len, location, &mut moved) {
        Ok(out) if moved > 0 => Ok(Some(out)),
        Ok(_) => Ok(None),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// A reader that knows its offset in the source.
struct Reader<R> {
    inner: R,
    pos: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8];
        self.inner.read_exact(&mut b)?;
        self.pos += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> io::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(invalid("varint longer than 10 bytes"))
    }

    fn bytes(&mut self, n: u64, out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        (&mut self.inner).take(n).read_to_end(out)?;
        if (out.len() - start) as u64 != n {
            return Err(invalid("truncated field"));
        }
        self.pos += n;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> io::Result<()> {
        let n = i64::try_from(n).map_err(|_| invalid("field too long"))?;
        self.inner.seek(SeekFrom::Current(n))?;
        self.pos += n as u64;
        Ok(())
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// One field's key: its number and wire type, checked against the message's end.
fn key<R: Read + Seek>(r: &mut Reader<R>, end: u64) -> io::Result<(u64, u64)> {
    let key = r.varint()?;
    if r.pos > end {
        return Err(invalid("field past its message"));
    }
    Ok((key >> 3, key & 7))
}

/// The end of a length-delimited field of `n` bytes starting here, inside its message.
fn field_end<R>(r: &Reader<R>, n: u64, end: u64) -> io::Result<u64> {
    match r.pos.checked_add(n) {
        Some(e) if e <= end => Ok(e),
        _ => Err(invalid("field past its message")),
    }
}

/// Copies the rest of a field whose key was just read (and written to `out`).
fn copy_value<R: Read + Seek>(
    r: &mut Reader<R>,
    wire: u64,
    end: u64,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let n = match wire {
        VARINT => {
            put_varint(out, r.varint()?);
            0
        }
        FIXED64 => 8,
        FIXED32 => 4,
        LEN => {
            let n = r.varint()?;
            put_varint(out, n);
            n
        }
        _ => return Err(invalid("protobuf group or unknown wire type")),
    };
    field_end(r, n, end)?;
    r.bytes(n, out)
}

/// A ModelProto whose graph's initializers go through [`tensor`].
fn model<R: Read + Seek>(
    r: &mut Reader<R>,
    end: u64,
    location: &str,
    moved: &mut usize,
) -> io::Result<Vec<u8>> {
    message(r, end, MODEL_GRAPH, &mut |r, end| {
        message(r, end, GRAPH_INITIALIZER, &mut |r, end| {
            tensor(r, end, location, moved)
        })
    })
}

/// What rewrites a submessage: the reader at its start and its end → the new bytes.
type Rewrite<'a, R> = dyn FnMut(&mut Reader<R>, u64) -> io::Result<Vec<u8>> + 'a;

/// Copies a message up to `end`, with each `field` submessage rewritten by `rewrite`.
fn message<R: Read + Seek>(
    r: &mut Reader<R>,
    end: u64,
    field_to_rewrite: u64,
    rewrite: &mut Rewrite<'_, R>,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while r.pos < end {
        let (field, wire) = key(r, end)?;
        if field == field_to_rewrite && wire == LEN {
            let n = r.varint()?;
            let inner = rewrite(r, field_end(r, n, end)?)?;
            put_len(&mut out, field, &inner);
        } else {
            put_varint(&mut out, field << 3 | wire);
            copy_value(r, wire, end, &mut out)?;
        }
    }
    if r.pos != end {
        return Err(invalid("message overruns its length"));
    }
    Ok(out)
}

fn tensor<R: Read + Seek>(
    r: &mut Reader<R>,
    end: u64,
    location: &str,
    moved: &mut usize,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut raw: Option<(u64, u64)> = None;
    while r.pos < end {
        let (field, wire) = key(r, end)?;
        if field == TENSOR_RAW_DATA && wire == LEN {
            let n = r.varint()?;
            field_end(r, n, end)?;
            if n >= MIN_EXTERNAL {
                raw = Some((r.pos, n));
                r.skip(n)?;
            } else {
                put_varint(&mut out, field << 3 | wire);
                put_varint(&mut out, n);
                r.bytes(n, &mut out)?;
            }
        } else if field == TENSOR_EXTERNAL_DATA || field == TENSOR_DATA_LOCATION {
            // Already stored elsewhere: leave the whole file to tract.
            return Err(invalid("tensor with external data"));
        } else {
            put_varint(&mut out, field << 3 | wire);
            copy_value(r, wire, end, &mut out)?;
        }
    }
    if r.pos != end {
        return Err(invalid("tensor overruns its length"));
    }
    if let Some((offset, length)) = raw {
        for (k, v) in [
            ("location", location.to_string()),
            ("offset", offset.to_string()),
            ("length", length.to_string()),
        ] {
            let mut entry = Vec::new();
            put_len(&mut entry, 1, k.as_bytes());
            put_len(&mut entry, 2, v.as_bytes());
            put_len(&mut out, TENSOR_EXTERNAL_DATA, &entry);
        }
        put_varint(&mut out, TENSOR_DATA_LOCATION << 3 | VARINT);
        put_varint(&mut out, DATA_LOCATION_EXTERNAL);
        *moved += 1;
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, field << 3 | LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        File::create(&path).unwrap().write_all(bytes).unwrap();
        (dir, path)
    }

    /// A ModelProto with ir_version 8 and a graph named "g" with one initializer "w" whose
    /// raw_data is `raw`.
    fn model_bytes(raw: &[u8]) -> (Vec<u8>, u64) {
        let mut tensor = Vec::new();
        put_varint(&mut tensor, 1 << 3); // dims
        put_varint(&mut tensor, raw.len() as u64);
        put_len(&mut tensor, 8, b"w"); // name
        let raw_key_at = tensor.len();
        put_len(&mut tensor, TENSOR_RAW_DATA, raw);
        let raw_in_tensor = raw_key_at + 1 + varint_len(raw.len() as u64);
        let mut graph = Vec::new();
        put_len(&mut graph, 2, b"g"); // name
        let tensor_at = graph.len() + 1 + varint_len(tensor.len() as u64);
        put_len(&mut graph, GRAPH_INITIALIZER, &tensor);
        let mut model = Vec::new();
        put_varint(&mut model, 1 << 3); // ir_version
        put_varint(&mut model, 8);
        let graph_at = model.len() + 1 + varint_len(graph.len() as u64);
        put_len(&mut model, MODEL_GRAPH, &graph);
        (model, (graph_at + tensor_at + raw_in_tensor) as u64)
    }

    fn varint_len(v: u64) -> usize {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out.len()
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_large_initializer_becomes_a_reference_to_its_own_bytes_in_the_file() {
        let raw: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let (bytes, offset) = model_bytes(&raw);
        assert_eq!(
            &bytes[offset as usize..offset as usize + raw.len()],
            &raw[..]
        );
        let (_dir, path) = file_with(&bytes);
        let slim = weights_by_reference(&path).unwrap().unwrap();
        assert!(slim.len() < 200, "{} bytes", slim.len());
        assert!(!contains(&slim, &raw[..64]));
        for text in [
            "m.onnx".to_string(),
            offset.to_string(),
            raw.len().to_string(),
        ] {
            assert!(contains(&slim, text.as_bytes()), "{text}");
        }
        // The graph's other fields survive.
        assert!(contains(&slim, b"\x12\x01g"));
    }

    #[test]
    fn small_initializers_stay_inline_and_leave_the_file_to_tract() {
        let (bytes, _) = model_bytes(&[7u8; 100]);
        let (_dir, path) = file_with(&bytes);
        assert_eq!(weights_by_reference(&path).unwrap(), None);
    }

    #[test]
    fn a_truncated_or_foreign_file_is_left_to_tract_and_never_panics() {
        let raw = vec![1u8; 8192];
        let (bytes, _) = model_bytes(&raw);
        for cut in [1, 5, 20, bytes.len() / 2, bytes.len() - 1] {
            let (_dir, path) = file_with(&bytes[..cut]);
            assert_eq!(weights_by_reference(&path).unwrap(), None, "cut at {cut}");
        }
        let (_dir, path) = file_with(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01");
        assert_eq!(weights_by_reference(&path).unwrap(), None);
        let (_dir, path) = file_with(b"\x0b\x0c"); // a group
        assert_eq!(weights_by_reference(&path).unwrap(), None);
    }

    #[test]
    fn the_fixture_encoder_loads_its_weights_from_the_file() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-clip/image.onnx");
        let slim = weights_by_reference(&path).unwrap().unwrap();
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(slim.len() * 20 < size, "{} of {size} bytes", slim.len());
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(weights_by_reference(Path::new("/nonexistent/x.onnx")).is_err());
    }
}
