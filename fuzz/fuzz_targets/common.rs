//! Helpers shared by the block and WAL targets (included with `mod common;`; not a target).
//!
//! libFuzzer cannot forge CRC32C checksums, so a target that only fed its input as-is
//! would mostly test the "checksum mismatch" path. The targets also run a copy of the
//! input in which the checksums of the structures the reader will look at are recomputed
//! (`fix_*`), so mutations reach the parsers behind the checksums.
#![allow(dead_code)]

/// Upper bound on loop iterations over one input.
pub const LIMIT: usize = 10_000;

pub fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Go's uvarint at `at`: (value, bytes used).
pub fn uvarint(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for i in 0..10 {
        let byte = *b.get(at.checked_add(i)?)?;
        if i == 9 && byte > 1 {
            return None;
        }
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

/// Writes CRC32C(`b[start..start+len]`) big-endian right after that range, if it fits.
/// Returns the offset past the CRC.
pub fn put_crc(b: &mut [u8], start: usize, len: usize) -> Option<usize> {
    let end = start.checked_add(len)?;
    let crc_end = end.checked_add(4)?;
    if crc_end > b.len() {
        return None;
    }
    let sum = crc32c::crc32c(&b[start..end]);
    b[end..crc_end].copy_from_slice(&sum.to_be_bytes());
    Some(crc_end)
}

/// A `len <4b> | body | CRC <4b>` section at `off`: fixes its CRC, returns its end.
fn fix_len_section(b: &mut [u8], off: usize) -> Option<usize> {
    let len = be32(b, off)? as usize;
    put_crc(b, off.checked_add(4)?, len)
}

fn align(x: usize, to: usize) -> usize {
    x.div_ceil(to).saturating_mul(to)
}

fn usize_of(x: u64) -> usize {
    usize::try_from(x).unwrap_or(usize::MAX)
}

/// Index file (v2): TOC, symbol table, series, legacy label indices, postings lists,
/// label offset table and postings offset table get correct CRCs.
pub fn fix_index(b: &mut [u8]) {
    const TOC_LEN: usize = 52;
    if b.len() < 5 + TOC_LEN {
        return;
    }
    let toc_at = b.len() - TOC_LEN;
    let toc: Vec<usize> = (0..6)
        .map(|i| usize_of(be64(b, toc_at + 8 * i).unwrap_or(u64::MAX)))
        .collect();
    let (symbols, series, label_indices, label_offset_table, postings, pot) =
        (toc[0], toc[1], toc[2], toc[3], toc[4], toc[5]);
    let _ = fix_len_section(b, symbols);
    // Series: 16-byte aligned `len <uvarint> | body | CRC`, from TOC.series to TOC.label_indices.
    let mut off = align(series, 16);
    for _ in 0..LIMIT {
        if off >= label_indices.min(toc_at) {
            break;
        }
        let Some((len, n)) = uvarint(b, off) else {
            break;
        };
        let Some(end) = put_crc(b, off + n, usize_of(len)) else {
            break;
        };
        off = align(end, 16);
    }
    // Legacy label indices (4-byte aligned) up to TOC.postings, then postings lists up to
    // the label offset table.
    for (from, to) in [(label_indices, postings), (postings, label_offset_table)] {
        let mut off = align(from, 4);
        for _ in 0..LIMIT {
            if off >= to.min(toc_at) {
                break;
            }
            let Some(end) = fix_len_section(b, off) else {
                break;
            };
            off = align(end, 4);
        }
    }
    let _ = fix_len_section(b, label_offset_table);
    let _ = fix_len_section(b, pot);
    // Last, in case a section overlapped the TOC.
    let _ = put_crc(b, toc_at, 48);
}

/// Chunk segment: walks the chunks from offset 8 and fixes each one's CRC (over the
/// encoding byte and the data).
pub fn fix_chunk_segment(b: &mut [u8]) {
    let mut off = 8usize;
    for _ in 0..LIMIT {
        let Some((len, n)) = uvarint(b, off) else {
            break;
        };
        let Some(end) = put_crc(b, off + n, usize_of(len).saturating_add(1)) else {
            break;
        };
        off = end;
    }
}

/// Tombstones file: the CRC (last 4 bytes) over everything after the 5-byte header.
pub fn fix_tombstones(b: &mut [u8]) {
    if b.len() >= 9 {
        let _ = put_crc(b, 5, b.len() - 9);
    }
}

/// WAL segment: walks fragments page by page (32 KiB pages, 7-byte headers
/// `type | len <2b> | CRC <4b>`) and fixes each fragment's CRC.
pub fn fix_wal_segment(b: &mut [u8]) {
    const PAGE: usize = 32 * 1024;
    const HEADER: usize = 7;
    let mut pos = 0usize;
    while pos + HEADER <= b.len() {
        let page_left = PAGE - pos % PAGE;
        if page_left < HEADER || b[pos] == 0 {
            pos += page_left;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([b[pos + 1], b[pos + 2]]));
        let data = pos + HEADER;
        let end = data + len;
        if end > b.len() {
            break;
        }
        let sum = crc32c::crc32c(&b[data..end]);
        b[pos + 3..pos + 7].copy_from_slice(&sum.to_be_bytes());
        pos = end;
    }
}

/// `data` as is, then the fixed copy if it differs.
pub fn variants(data: &[u8], fix: fn(&mut [u8])) -> Vec<Vec<u8>> {
    let mut fixed = data.to_vec();
    fix(&mut fixed);
    if fixed == data {
        vec![fixed]
    } else {
        vec![data.to_vec(), fixed]
    }
}
