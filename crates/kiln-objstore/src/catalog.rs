//! The blocks of a bucket: one listing of the bucket's top level, then each block's
//! `meta.json` (several at a time).
//!
//! A directory named by a ULID is a block when its `meta.json` exists and reads; without
//! one it is an upload in progress or an interrupted one (a *partial* block), which
//! readers skip; with one that does not read it is *corrupt*, reported and skipped, never
//! fatal to the rest of the bucket.

use futures_util::StreamExt;
use kiln_tsdb::block::BlockMeta;
use ulid::Ulid;

use crate::bucket::{Bucket, BucketError};
use crate::thanos_meta::ThanosMeta;

/// `meta.json` files fetched at once.
const FETCH_CONCURRENCY: usize = 32;

/// A block of the bucket.
#[derive(Debug, Clone)]
pub struct BucketBlock {
    pub meta: BlockMeta,
    /// The `thanos` section (empty for a block uploaded by plain tools).
    pub thanos: ThanosMeta,
}

impl BucketBlock {
    /// Bytes of the block's files as its `thanos.files` lists them (0 when it has none).
    pub fn listed_size(&self) -> u64 {
        self.thanos
            .files
            .iter()
            .map(|f| u64::try_from(f.size_bytes).unwrap_or(0))
            .sum()
    }
}

/// What a listing found.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Readable blocks, by ULID.
    pub blocks: Vec<BucketBlock>,
    /// Block directories without `meta.json`.
    pub partial: Vec<Ulid>,
    /// Block directories whose `meta.json` does not read, with the reason.
    pub corrupt: Vec<(Ulid, String)>,
}

/// Lists the bucket's blocks. Fails only when the bucket cannot be listed, or a
/// `meta.json` cannot be fetched for another reason than its absence.
pub async fn list_blocks(bucket: &Bucket) -> Result<Catalog, BucketError> {
    let ids: Vec<Ulid> = bucket
        .iter("", false)
        .await?
        .iter()
        .filter_map(|name| name.strip_suffix('/'))
        .filter_map(|name| Ulid::from_string(name).ok())
        .collect();
    let mut fetched = futures_util::stream::iter(ids)
        .map(|id| async move { (id, bucket.get(&format!("{id}/meta.json")).await) })
        .buffer_unordered(FETCH_CONCURRENCY);
    let mut catalog = Catalog::default();
    while let Some((id, result)) = fetched.next().await {
        let bytes = match result {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                catalog.partial.push(id);
                continue;
            }
            Err(e) => return Err(e),
        };
        let path = std::path::PathBuf::from(format!("{id}/meta.json"));
        let parsed = BlockMeta::from_json(&bytes, &path)
            .map_err(|e| e.to_string())
            .and_then(|meta| {
                if meta.ulid != id {
                    return Err(format!("meta.json names block {}", meta.ulid));
                }
                let thanos = ThanosMeta::of(&meta).map_err(|e| format!("thanos section: {e}"))?;
                Ok(BucketBlock { meta, thanos })
            });
        match parsed {
            Ok(b) => catalog.blocks.push(b),
            Err(reason) => catalog.corrupt.push((id, reason)),
        }
    }
    catalog.blocks.sort_by_key(|b| b.meta.ulid);
    catalog.partial.sort();
    catalog.corrupt.sort();
    Ok(catalog)
}
