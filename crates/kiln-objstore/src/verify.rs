//! Checks of a bucket's blocks, as `thanos tools bucket verify` runs them: blocks of one
//! group (external labels and resolution) whose time ranges overlap, files a block's
//! `meta.json` lists that are missing or of another size, and index problems (series out
//! of order, chunks out of order or outside the block, counts that disagree with
//! `meta.json`). Nothing is repaired.

use std::collections::BTreeMap;

use kiln_tsdb::block::IndexReader;
use ulid::Ulid;

use crate::bucket::{Bucket, BucketError};
use crate::catalog::{BucketBlock, Catalog};

/// What a check looks for, by Thanos's issue names (`missing_files` is Kiln's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    OverlappedBlocks,
    IndexKnownIssues,
    MissingFiles,
}

impl Issue {
    pub const ALL: [Issue; 3] = [
        Issue::OverlappedBlocks,
        Issue::IndexKnownIssues,
        Issue::MissingFiles,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Issue::OverlappedBlocks => "overlapped_blocks",
            Issue::IndexKnownIssues => "index_known_issues",
            Issue::MissingFiles => "missing_files",
        }
    }

    pub fn from_name(name: &str) -> Option<Issue> {
        Issue::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub issue: Issue,
    /// The blocks concerned.
    pub blocks: Vec<Ulid>,
    pub what: String,
}

/// Runs the `issues` checks over the catalog's blocks (all of them, or those in `only`).
/// Fails only when the bucket cannot be read; what is wrong with blocks is in the result.
pub async fn verify(
    bucket: &Bucket,
    catalog: &Catalog,
    issues: &[Issue],
    only: &[Ulid],
) -> Result<Vec<Finding>, BucketError> {
    let selected: Vec<&BucketBlock> = catalog
        .blocks
        .iter()
        .filter(|b| only.is_empty() || only.contains(&b.meta.ulid))
        .collect();
    let mut findings = Vec::new();
    if issues.contains(&Issue::OverlappedBlocks) {
        findings.extend(overlaps(&selected));
    }
    for b in &selected {
        if issues.contains(&Issue::MissingFiles) {
            findings.extend(missing_files(bucket, b).await?);
        }
        if issues.contains(&Issue::IndexKnownIssues) {
            findings.extend(index_issues(bucket, b).await?);
        }
    }
    Ok(findings)
}

/// Overlapping time ranges within each group of blocks.
fn overlaps(blocks: &[&BucketBlock]) -> Vec<Finding> {
    // A group: the resolution and the external labels.
    let mut groups: BTreeMap<(i64, &BTreeMap<String, String>), Vec<&BucketBlock>> = BTreeMap::new();
    for b in blocks {
        groups
            .entry((b.thanos.downsample.resolution, &b.thanos.labels))
            .or_default()
            .push(b);
    }
    let mut out = Vec::new();
    for ((resolution, labels), mut group) in groups {
        group.sort_by_key(|b| (b.meta.min_time, b.meta.ulid));
        for (i, a) in group.iter().enumerate() {
            for b in group.iter().skip(i + 1) {
                if b.meta.min_time >= a.meta.max_time {
                    break;
                }
                out.push(Finding {
                    issue: Issue::OverlappedBlocks,
                    blocks: vec![a.meta.ulid, b.meta.ulid],
                    what: format!(
                        "[{}, {}) and [{}, {}) overlap (resolution {resolution}, labels {labels:?})",
                        a.meta.min_time, a.meta.max_time, b.meta.min_time, b.meta.max_time
                    ),
                });
            }
        }
    }
    out
}

/// Files `thanos.files` lists that are missing or differ in size; without that list,
/// the index and at least one chunk file.
async fn missing_files(bucket: &Bucket, b: &BucketBlock) -> Result<Vec<Finding>, BucketError> {
    let id = b.meta.ulid;
    let present: BTreeMap<String, u64> = bucket
        .list_sizes(&id.to_string())
        .await?
        .into_iter()
        .map(|(name, size)| {
            let rel = name
                .strip_prefix(&format!("{id}/"))
                .unwrap_or(&name)
                .to_owned();
            (rel, size)
        })
        .collect();
    let mut problems = Vec::new();
    if b.thanos.files.is_empty() {
        if !present.contains_key("index") {
            problems.push("no index".to_owned());
        }
        if !present.keys().any(|k| k.starts_with("chunks/")) {
            problems.push("no chunk file".to_owned());
        }
    }
    for f in &b.thanos.files {
        match present.get(&f.rel_path) {
            None => problems.push(format!("{} is missing", f.rel_path)),
            Some(&size) if f.size_bytes > 0 && size != f.size_bytes as u64 => {
                problems.push(format!(
                    "{} is {size} bytes, meta.json says {}",
                    f.rel_path, f.size_bytes
                ))
            }
            Some(_) => {}
        }
    }
    Ok(problems
        .into_iter()
        .map(|what| Finding {
            issue: Issue::MissingFiles,
            blocks: vec![id],
            what,
        })
        .collect())
}

/// Reads the block's index whole and checks it against itself and `meta.json`.
async fn index_issues(bucket: &Bucket, b: &BucketBlock) -> Result<Vec<Finding>, BucketError> {
    let id = b.meta.ulid;
    let finding = |what: String| Finding {
        issue: Issue::IndexKnownIssues,
        blocks: vec![id],
        what,
    };
    let bytes = match bucket.get(&format!("{id}/index")).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => return Ok(vec![finding("no index".to_owned())]),
        Err(e) => return Err(e),
    };
    let problems = match IndexReader::from_bytes(bytes.to_vec()) {
        Ok(index) => check_index(&index, &b.meta),
        Err(e) => vec![format!("the index does not read: {e}")],
    };
    Ok(problems.into_iter().map(finding).collect())
}

/// The problems of an index, in words (at most one per kind of problem and series, and
/// at most 20 in all).
fn check_index(index: &IndexReader, meta: &kiln_tsdb::block::BlockMeta) -> Vec<String> {
    const MAX: usize = 20;
    let mut out = Vec::new();
    if let Err(e) = index.check() {
        out.push(format!("the index is damaged: {e}"));
        return out;
    }
    let ids = match index.all_postings() {
        Ok(p) => p.into_vec(),
        Err(e) => return vec![format!("the index's postings do not read: {e}")],
    };
    let mut previous: Option<kiln_model::Labels> = None;
    let mut chunks = 0u64;
    for id in &ids {
        let (labels, metas) = match index.series(*id) {
            Ok(s) => s,
            Err(e) => {
                out.push(format!("series {id} does not read: {e}"));
                break;
            }
        };
        if previous.as_ref().is_some_and(|p| *p >= labels) {
            out.push(format!("series {labels} is out of order"));
        }
        chunks += metas.len() as u64;
        let mut last_max = i64::MIN;
        for m in &metas {
            if m.min_time > m.max_time {
                out.push(format!("series {labels}: a chunk ends before it starts"));
                break;
            }
            if m.min_time <= last_max {
                out.push(format!(
                    "series {labels}: chunks out of order or overlapping"
                ));
                break;
            }
            if m.min_time < meta.min_time || m.max_time >= meta.max_time {
                out.push(format!(
                    "series {labels}: a chunk [{}, {}] lies outside the block [{}, {})",
                    m.min_time, m.max_time, meta.min_time, meta.max_time
                ));
                break;
            }
            last_max = m.max_time;
        }
        previous = Some(labels);
        if out.len() >= MAX {
            out.push("(more problems not listed)".to_owned());
            return out;
        }
    }
    if meta.stats.num_series != 0 && ids.len() as u64 != meta.stats.num_series {
        out.push(format!(
            "the index holds {} series, meta.json says {}",
            ids.len(),
            meta.stats.num_series
        ));
    }
    if meta.stats.num_chunks != 0 && chunks != meta.stats.num_chunks {
        out.push(format!(
            "the index holds {chunks} chunks, meta.json says {}",
            meta.stats.num_chunks
        ));
    }
    out
}
