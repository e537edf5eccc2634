//! The framing of streamed remote-read answers: each frame is the uvarint length of a
//! `ChunkedReadResponse` message, its CRC-32C (Castagnoli) as 4 big-endian bytes, then
//! the message.

/// Appends one frame holding `msg` to `out`.
pub(crate) fn put_frame(out: &mut Vec<u8>, msg: &[u8]) {
    let mut len = msg.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(&crc32c::crc32c(msg).to_be_bytes());
    out.extend_from_slice(msg);
}

/// Why a streamed body could not be split into frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame at byte {offset}: truncated")]
    Truncated { offset: usize },
    #[error("frame at byte {offset}: {len} bytes, over the limit of {limit}")]
    TooLarge {
        offset: usize,
        len: u64,
        limit: usize,
    },
    #[error("frame at byte {offset}: checksum mismatch")]
    Checksum { offset: usize },
}

/// Splits `body` into frame payloads, checking lengths (at most `max_frame` bytes
/// each) and checksums.
pub(crate) fn frames(body: &[u8], max_frame: usize) -> Result<Vec<&[u8]>, FrameError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let offset = pos;
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&b) = body.get(pos) else {
                return Err(FrameError::Truncated { offset });
            };
            pos += 1;
            if shift > 63 {
                return Err(FrameError::Truncated { offset });
            }
            len |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        if len > max_frame as u64 {
            return Err(FrameError::TooLarge {
                offset,
                len,
                limit: max_frame,
            });
        }
        let len = len as usize;
        let Some(crc) = body.get(pos..pos + 4) else {
            return Err(FrameError::Truncated { offset });
        };
        let want = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        pos += 4;
        let Some(msg) = body.get(pos..pos + len) else {
            return Err(FrameError::Truncated { offset });
        };
        if crc32c::crc32c(msg) != want {
            return Err(FrameError::Checksum { offset });
        }
        out.push(msg);
        pos += len;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_detected() {
        let mut body = Vec::new();
        put_frame(&mut body, b"hello");
        put_frame(&mut body, &[7u8; 300]);
        let got = frames(&body, 1 << 20).unwrap();
        assert_eq!(got, vec![&b"hello"[..], &[7u8; 300][..]]);
        assert!(matches!(
            frames(&body, 100),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            frames(&body[..body.len() - 1], 1 << 20),
            Err(FrameError::Truncated { .. })
        ));
        let mut bad = body.clone();
        bad[6] ^= 1;
        assert!(matches!(
            frames(&bad, 1 << 20),
            Err(FrameError::Checksum { .. })
        ));
    }
}
