//! Compressed JSON lines and CSV input, decompressed by file extension as Spark does
//! (Hadoop's `CompressionCodecFactory` picks the codec by the file name's last
//! extension):
//!
//! | extension | codec | crate |
//! |---|---|---|
//! | `.gz` | gzip (concatenated members too) | `flate2` |
//! | `.deflate` | zlib stream (Hadoop's `DefaultCodec`; a raw deflate stream too) | `flate2` |
//! | `.zst` | Zstandard (several frames too) | `zstd` |
//! | `.bz2` | bzip2 (concatenated streams too) | `bzip2` |
//! | `.lz4` | LZ4 frame format (the `lz4` tool's), or Hadoop's `Lz4Codec` block stream | `lz4_flex` |
//!
//! So `part-00003.json.gz` is read as the JSON lines it holds. The file's format is the
//! source's (`format("json")`), whatever precedes the codec extension.
//!
//! A compressed file is never parsed as text:
//! * `.snappy`, `.lzo`, `.xz`, `.lzma`, `.zip`, `.br`, `.7z` files are refused with an
//!   error naming the file (Sluice has no codec for them);
//! * a file without a codec extension whose first bytes are the magic number of a
//!   compressed format (gzip, zstd, bzip2, LZ4 frame, xz, zip) is refused too, naming the
//!   codec to put in its name (Spark would read such a file as garbage text).
//!
//! A damaged compressed file fails the batch with [`SluiceError::Io`] naming the file,
//! whatever the parse mode: it is not a malformed record (as Spark without
//! `ignoreCorruptFiles`). Parquet files are not affected (their compression is internal).

use std::io::Read;
use std::path::Path;

use sluice_engine::{Result, SluiceError};

/// A codec of compressed input files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `.gz`
    Gzip,
    /// `.deflate`
    Deflate,
    /// `.zst`
    Zstd,
    /// `.bz2`
    Bzip2,
    /// `.lz4`
    Lz4,
}

/// Extensions of compressed files Sluice cannot read, refused rather than read as text.
const UNSUPPORTED: [&str; 7] = ["snappy", "lzo", "xz", "lzma", "zip", "br", "7z"];

impl Codec {
    /// The codec of a file by its last extension (case-insensitive), `None` when it has
    /// no codec extension.
    pub fn from_path(path: &Path) -> Option<Codec> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "gz" => Codec::Gzip,
            "deflate" => Codec::Deflate,
            "zst" => Codec::Zstd,
            "bz2" => Codec::Bzip2,
            "lz4" => Codec::Lz4,
            _ => return None,
        })
    }

    /// Compresses `bytes` (the file sink's `compression` for JSON and CSV: gzip, zstd).
    ///
    /// # Errors
    /// The encoder's I/O error; `Unsupported` for a codec the sink does not write.
    pub fn compress(self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        use std::io::Write;
        match self {
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(bytes)?;
                e.finish()
            }
            Codec::Zstd => zstd::encode_all(bytes, 3),
            other => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("the file sink does not write .{} files", other.extension()),
            )),
        }
    }

    /// The extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Gzip => "gz",
            Codec::Deflate => "deflate",
            Codec::Zstd => "zst",
            Codec::Bzip2 => "bz2",
            Codec::Lz4 => "lz4",
        }
    }

    /// Decompresses `bytes`.
    ///
    /// # Errors
    /// The codec's error for a damaged or truncated stream.
    pub fn decompress(self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(bytes.len().saturating_mul(4));
        match self {
            Codec::Gzip => {
                flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out)?;
            }
            Codec::Deflate => {
                // A zlib header: CM = 8 and the header checksum.
                let zlib = bytes.len() >= 2 && bytes[0] & 0x0f == 8 && (u16::from(bytes[0]) << 8 | u16::from(bytes[1])) % 31 == 0;
                if zlib {
                    flate2::read::ZlibDecoder::new(bytes).read_to_end(&mut out)?;
                } else {
                    flate2::read::DeflateDecoder::new(bytes).read_to_end(&mut out)?;
                }
            }
            Codec::Zstd => {
                zstd::stream::read::Decoder::new(bytes)?.read_to_end(&mut out)?;
            }
            Codec::Bzip2 => {
                bzip2::read::MultiBzDecoder::new(bytes).read_to_end(&mut out)?;
            }
            Codec::Lz4 if bytes.starts_with(&LZ4_FRAME_MAGIC) => {
                lz4_flex::frame::FrameDecoder::new(bytes).read_to_end(&mut out)?;
            }
            Codec::Lz4 => hadoop_lz4_blocks(bytes, &mut out)?,
        }
        Ok(out)
    }
}

const LZ4_FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// Hadoop's `Lz4Codec` stream (`BlockCompressorStream`): blocks of a big-endian u32
/// uncompressed length followed by chunks of a big-endian u32 compressed length and an
/// LZ4 block, until the block's length is reached.
fn hadoop_lz4_blocks(mut bytes: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let take_u32 = |bytes: &mut &[u8]| -> std::io::Result<usize> {
        let (head, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| invalid("truncated LZ4 block stream (neither an LZ4 frame nor Hadoop's Lz4Codec)".into()))?;
        *bytes = rest;
        Ok(u32::from_be_bytes(*head) as usize)
    };
    while !bytes.is_empty() {
        let block_len = take_u32(&mut bytes)?;
        let mut done = 0;
        while done < block_len {
            let chunk_len = take_u32(&mut bytes)?;
            if chunk_len > bytes.len() {
                return Err(invalid(format!("LZ4 chunk of {chunk_len} bytes past the end of the file")));
            }
            let (chunk, rest) = bytes.split_at(chunk_len);
            bytes = rest;
            let before = out.len();
            // An LZ4 block expands at most 255 times: a damaged length cannot make a
            // huge allocation.
            out.resize(before + (block_len - done).min(chunk_len.saturating_mul(255) + 16), 0);
            let n = lz4_flex::block::decompress_into(chunk, &mut out[before..])
                .map_err(|e| invalid(format!("LZ4 block: {e}")))?;
            out.truncate(before + n);
            if n == 0 {
                return Err(invalid("empty LZ4 chunk in a block".into()));
            }
            done += n;
        }
    }
    Ok(())
}

/// The compressed format whose magic number `bytes` starts with, if any.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    const MAGICS: [(&[u8], &str); 6] = [
        (&[0x1f, 0x8b], "gzip (.gz)"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd (.zst)"),
        (&LZ4_FRAME_MAGIC, "LZ4 (.lz4)"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
        (b"PK\x03\x04", "zip"),
        (b"BZh", "bzip2 (.bz2)"),
    ];
    let (_, name) = MAGICS.iter().find(|(magic, name)| {
        // bzip2: "BZh", the block size digit, then the block magic (BCD of pi).
        if name.starts_with("bzip2") {
            bytes.len() >= 10 && bytes.starts_with(magic) && (b'1'..=b'9').contains(&bytes[3]) && &bytes[4..10] == b"1AY&SY"
        } else {
            bytes.starts_with(magic)
        }
    })?;
    Some(name)
}

fn invalid_file(path: &str, message: String) -> SluiceError {
    SluiceError::Io { path: path.to_string(), source: std::io::Error::new(std::io::ErrorKind::InvalidData, message) }
}

/// The text of the file `path` whose bytes are `bytes`, decompressed by its extension
/// (see the module docs).
///
/// # Errors
/// [`SluiceError::Io`] naming the file: it cannot be read, its compressed stream is
/// damaged, it has an unsupported codec extension, or it is compressed under a name
/// without a codec extension.
pub(crate) fn text_of(path: &str, bytes: bytes::Bytes) -> Result<bytes::Bytes> {
    let p = Path::new(path);
    if let Some(codec) = Codec::from_path(p) {
        return codec
            .decompress(&bytes)
            .map(bytes::Bytes::from)
            .map_err(|e| invalid_file(path, format!("cannot decompress this .{} file: {e}", codec.extension())));
    }
    let ext = p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    if UNSUPPORTED.contains(&ext.as_str()) {
        return Err(invalid_file(
            path,
            format!(".{ext} files are not supported (compressed input: .gz, .deflate, .zst, .bz2, .lz4)"),
        ));
    }
    if let Some(codec) = sniff(&bytes) {
        return Err(invalid_file(
            path,
            format!("the file is {codec}-compressed but its name has no codec extension; refusing to read it as text"),
        ));
    }
    // Uncompressed: the bytes as read, not copied.
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const TEXT: &[u8] = b"{\"id\": 1}\n{\"id\": 2}\n";

    fn compressed(codec: Codec) -> Vec<u8> {
        match codec {
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(TEXT).unwrap();
                e.finish().unwrap()
            }
            Codec::Deflate => {
                let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(TEXT).unwrap();
                e.finish().unwrap()
            }
            Codec::Zstd => zstd::encode_all(TEXT, 3).unwrap(),
            Codec::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
                e.write_all(TEXT).unwrap();
                e.finish().unwrap()
            }
            Codec::Lz4 => {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                e.write_all(TEXT).unwrap();
                e.finish().unwrap()
            }
        }
    }

    #[test]
    fn every_codec_roundtrips_and_damage_is_an_error() {
        for codec in [Codec::Gzip, Codec::Deflate, Codec::Zstd, Codec::Bzip2, Codec::Lz4] {
            let bytes = compressed(codec);
            assert_eq!(Codec::from_path(Path::new(&format!("a.json.{}", codec.extension()))), Some(codec));
            assert_eq!(codec.decompress(&bytes).unwrap(), TEXT, "{codec:?}");
            assert!(codec.decompress(&bytes[..bytes.len() / 2]).is_err(), "{codec:?}: truncated");
        }
        // Hadoop's Lz4Codec block stream.
        let block = lz4_flex::block::compress(TEXT);
        let mut hadoop = (TEXT.len() as u32).to_be_bytes().to_vec();
        hadoop.extend_from_slice(&(block.len() as u32).to_be_bytes());
        hadoop.extend_from_slice(&block);
        assert_eq!(Codec::Lz4.decompress(&hadoop).unwrap(), TEXT);
        assert!(Codec::Lz4.decompress(&hadoop[..hadoop.len() - 1]).is_err());
    }

    #[test]
    fn compressed_bytes_are_recognised() {
        for codec in [Codec::Gzip, Codec::Zstd, Codec::Bzip2, Codec::Lz4] {
            assert!(sniff(&compressed(codec)).is_some(), "{codec:?}");
        }
        assert_eq!(sniff(TEXT), None);
        assert_eq!(sniff(b"BZh,a,b\n"), None, "text starting like bzip2's magic is text");
    }
}
