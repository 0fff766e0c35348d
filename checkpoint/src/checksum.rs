//! The integrity trailer of every file a checkpoint writes.
//!
//! A sealed object is its payload followed by one trailer line:
//!
//! ```text
//! <payload bytes>#sluice crc32=<8 lowercase hex digits> len=<payload length in bytes, decimal>\n
//! ```
//!
//! The checksum is CRC-32 (IEEE 802.3, the one of zlib and gzip, computed by `crc32fast`)
//! of the payload alone. Text payloads end with a newline, so the trailer is their last
//! line and the file stays readable:
//!
//! ```text
//! v1
//! {"next_batch_watermark_ms":0,"operator_watermarks_ms":[],"state_deltas":[]}
//! #sluice crc32=69ecb449 len=79
//! ```
//!
//! Binary payloads (Arrow IPC state files) get the same trailer right after their last
//! byte. The trailer does not name the file, so a file copied to another name (a batch
//! re-planned by hand, a test) still opens.
//!
//! [`open`] accepts an object only when its last line is exactly the trailer [`seal`] would
//! write for the bytes before it: any change to a payload byte changes the CRC (CRC-32
//! detects every error burst of up to 32 bits, so every single changed byte), any change to
//! the trailer makes it differ from the canonical one, and a truncation removes or cuts the
//! trailer or makes the recorded length disagree. It is an integrity check against torn and
//! damaged files, not an authentication: someone who rewrites a file can rewrite its
//! trailer too. One blind spot is inherent to a trailer: a truncation that ends exactly
//! after a valid sealed object embedded in the payload (a payload that itself ends a
//! sealed file at that point) opens as that inner object. Sluice's payloads never embed
//! one; torn writes cut at arbitrary or block-aligned points, not there.
//!
//! These functions are what [`Checkpoint::put`](crate::Checkpoint::put) and
//! [`Checkpoint::get`](crate::Checkpoint::get) use; they are public so that files written
//! outside a checkpoint (the file sink's manifest, with `std::fs`) can use the same format.

/// The start of the trailer line: `#sluice crc32=`.
pub const TRAILER_MARKER: &str = "#sluice crc32=";

/// The longest trailer: the marker, 8 hex digits, ` len=`, 20 decimal digits (`u64::MAX`)
/// and the newline, 48 bytes.
pub const MAX_TRAILER_LEN: usize = TRAILER_MARKER.len() + 8 + " len=".len() + 20 + 1;

/// The CRC-32 (IEEE) of `payload`.
pub fn crc32(payload: &[u8]) -> u32 {
    crc32fast::hash(payload)
}

/// The trailer line [`seal`] appends to `payload`:
/// `#sluice crc32=<8 lowercase hex> len=<bytes>\n`.
pub fn trailer(payload: &[u8]) -> String {
    format!("{TRAILER_MARKER}{:08x} len={}\n", crc32(payload), payload.len())
}

/// `payload` followed by its trailer (see the module docs). Never fails; an empty payload
/// is sealed too (its object is the trailer alone).
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let trailer = trailer(payload);
    let mut out = Vec::with_capacity(payload.len() + trailer.len());
    out.extend_from_slice(payload);
    out.extend_from_slice(trailer.as_bytes());
    out
}

/// Checks a sealed object and returns its payload (the bytes before the trailer).
///
/// # Errors
/// A sentence saying why the object is not intact, for a `Corrupt { path, reason }`: the
/// object is empty; it does not end with a newline; it has no trailer; the trailer is
/// garbled (not exactly `#sluice crc32=<8 lowercase hex> len=<decimal>\n`); the recorded
/// length differs from the bytes before the trailer; the CRC differs. Never panics, on
/// any input.
pub fn open(object: &[u8]) -> Result<&[u8], String> {
    if object.is_empty() {
        return Err("the file is empty (torn write?)".into());
    }
    if object.last() != Some(&b'\n') {
        return Err(format!(
            "no checksum trailer: the file ({} bytes) does not end with a newline (torn or truncated write?)",
            object.len()
        ));
    }
    let tail_start = object.len().saturating_sub(MAX_TRAILER_LEN);
    let marker = TRAILER_MARKER.as_bytes();
    let Some(pos) = object[tail_start..].windows(marker.len()).rposition(|w| w == marker) else {
        return Err(format!(
            "no checksum trailer (a last line `{TRAILER_MARKER}<hex> len=<n>`): the file is torn or damaged, \
             or was not written by this version of Sluice"
        ));
    };
    let (payload, found) = object.split_at(tail_start + pos);
    let garbled = || format!("garbled checksum trailer {:?}", String::from_utf8_lossy(found));
    // `found` ends with the newline checked above.
    let fields = std::str::from_utf8(&found[marker.len()..found.len() - 1]).map_err(|_| garbled())?;
    let (crc_hex, len) = fields.split_once(" len=").ok_or_else(garbled)?;
    let canonical_hex = crc_hex.len() == 8 && crc_hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let canonical_len = !len.is_empty()
        && len.bytes().all(|b| b.is_ascii_digit())
        && (len == "0" || !len.starts_with('0'));
    if !canonical_hex || !canonical_len {
        return Err(garbled());
    }
    let recorded_crc = u32::from_str_radix(crc_hex, 16).map_err(|_| garbled())?;
    let recorded_len: u64 = len.parse().map_err(|_| garbled())?;
    if recorded_len != payload.len() as u64 {
        return Err(format!(
            "length mismatch: the checksum trailer records {recorded_len} bytes of content but {} bytes precede it \
             (truncated, extended or spliced)",
            payload.len()
        ));
    }
    let actual = crc32(payload);
    if actual != recorded_crc {
        return Err(format!(
            "checksum mismatch: the trailer records crc32 {recorded_crc:08x} but the content hashes to {actual:08x} \
             (bytes changed on disk)"
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_roundtrips_text_binary_and_empty() {
        for payload in [&b"v1\n{\"a\":1}\n"[..], b"\x00\xffARROW1\n#sluice crc32=", b""] {
            let sealed = seal(payload);
            assert_eq!(open(&sealed).unwrap(), payload);
            assert!(sealed.len() - payload.len() <= MAX_TRAILER_LEN);
        }
        let text = String::from_utf8(seal(b"v1\nx\n")).unwrap();
        assert!(text.starts_with("v1\nx\n#sluice crc32="), "{text}");
        assert!(text.ends_with(" len=5\n"), "{text}");
    }

    /// The format is fixed: the example of the module docs, byte for byte (CRC-32 IEEE).
    #[test]
    fn the_documented_trailer_is_exact() {
        let payload = b"v1\n{\"next_batch_watermark_ms\":0,\"operator_watermarks_ms\":[],\"state_deltas\":[]}\n";
        assert_eq!(trailer(payload), "#sluice crc32=69ecb449 len=79\n");
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926, "the CRC-32 check value");
    }

    #[test]
    fn each_way_of_breaking_a_file_has_its_reason() {
        let sealed = seal(b"v1\nhello\n");
        let reason = |b: &[u8]| open(b).unwrap_err();
        assert!(reason(b"").contains("empty"));
        assert!(reason(&sealed[..sealed.len() - 1]).contains("does not end with a newline"));
        assert!(reason(b"v1\nhello\n").contains("no checksum trailer"));
        let mut upper = sealed.clone();
        let at = sealed.len() - " len=9\n".len() - 1;
        upper[at] = upper[at].to_ascii_uppercase();
        if upper != sealed {
            assert!(reason(&upper).contains("garbled"));
        }
        let mut longer = b"v1\nhello\n\n".to_vec();
        longer.extend_from_slice(trailer(b"v1\nhello\n").as_bytes());
        assert!(reason(&longer).contains("length mismatch"));
        let mut flipped = sealed.clone();
        flipped[4] ^= 0x20;
        assert!(reason(&flipped).contains("checksum mismatch"));
    }
}
