//! `kiln tools bucket`: looking at, checking, marking, rewriting and filling a bucket,
//! as `thanos tools bucket` does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use kiln_objstore::markers::{self, Marked, MarkerKind};
use kiln_objstore::rewrite::{self, DeletionRequest, OldBlock};
use kiln_objstore::thanos_meta::source;
use kiln_objstore::verify::{self, Issue};
use kiln_objstore::{BucketBlock, Shipper, list_blocks};

use crate::objstore_flags::ObjstoreFlags;
use crate::tsdb_tools::format::{go_base2_bytes, go_duration};

#[derive(clap::Args)]
pub(crate) struct BucketArgs {
    #[command(flatten)]
    objstore: ObjstoreFlags,
    #[command(subcommand)]
    command: BucketCommand,
}

#[derive(clap::Subcommand)]
enum BucketCommand {
    /// List the bucket's blocks: their ULIDs (as `thanos tools bucket ls`); `-o wide` adds
    /// time range, level, resolution, source, external labels and size; `-o json` prints
    /// each block's meta.json. Upload directories without meta.json are not blocks and
    /// are left out (counted on stderr).
    Ls {
        /// `""` (ULIDs), `wide` or `json`.
        #[arg(short = 'o', long = "output", default_value = "")]
        output: String,
    },
    /// A table of the bucket's blocks (time range, series, samples, chunks, compaction
    /// level, labels, resolution, source), oldest first, as `thanos tools bucket inspect`.
    Inspect,
    /// Check the bucket's blocks, as `thanos tools bucket verify`: `overlapped_blocks`
    /// (blocks of one group whose time ranges overlap), `index_known_issues` (each
    /// block's index read whole and checked), `missing_files` (files meta.json lists
    /// that are missing or of another size). Prints each problem; exits 1 when there is
    /// one. Nothing is repaired.
    Verify {
        /// An issue to check; repeat for more (default: all three).
        #[arg(short = 'i', long = "issues")]
        issues: Vec<String>,
        /// Check only this block (overlaps are checked among the blocks given); repeat.
        #[arg(long = "id")]
        ids: Vec<String>,
    },
    /// Set (or with --remove, take away) a marker on blocks, as `thanos tools bucket
    /// mark`: `deletion-mark.json` (the compactor deletes the block after its delete
    /// delay), `no-compact-mark.json`, `no-downsample-mark.json`.
    Mark {
        /// ULID of a block to mark; repeat for more.
        #[arg(long = "id", required = true)]
        ids: Vec<String>,
        /// The marker: deletion-mark.json, no-compact-mark.json or no-downsample-mark.json.
        #[arg(long = "marker")]
        marker: String,
        /// Why, kept in the marker.
        #[arg(long = "details", default_value = "")]
        details: String,
        /// Remove the marker instead of setting it.
        #[arg(long = "remove")]
        remove: bool,
    },
    /// Rewrite blocks without the series and samples a deletion file names, as `thanos
    /// tools bucket rewrite`: each block is downloaded into --tmp.dir, rewritten, and
    /// uploaded under a new ULID (`source: bucket.rewrite`, a `rewrites` entry); the old
    /// block is then marked for deletion (--delete-blocks: deleted at once). A dry run
    /// (the default, as with Thanos) only reports what would change; --no-dry-run applies.
    Rewrite {
        /// ULID of a block to rewrite; repeat for more.
        #[arg(long = "id", required = true)]
        ids: Vec<String>,
        /// YAML list of deletions: `- matchers: '{job="x"}'` with optional `intervals:
        /// [{mint: MS, maxt: MS}]`.
        #[arg(
            long = "rewrite.to-delete-config-file",
            conflicts_with = "to_delete_config"
        )]
        to_delete_config_file: Option<std::path::PathBuf>,
        /// The deletions as YAML text, instead of a file.
        #[arg(long = "rewrite.to-delete-config", allow_hyphen_values = true)]
        to_delete_config: Option<String>,
        /// Where blocks are downloaded and rewritten.
        #[arg(long = "tmp.dir", default_value_os_t = std::env::temp_dir().join("kiln-rewrite"))]
        tmp_dir: std::path::PathBuf,
        /// Apply the rewrite (without it, only report).
        #[arg(long = "no-dry-run")]
        apply: bool,
        /// Delete the old blocks at once instead of marking them for deletion.
        #[arg(long = "delete-blocks")]
        delete_blocks: bool,
    },
    /// Downsample the bucket's blocks once, as Thanos's compactor does: raw blocks
    /// spanning at least 40h to 5m, 5m blocks spanning at least 10 days to 1h, each
    /// unless the bucket has that downsampled block already or the block has a
    /// no-downsample mark. Blocks are downloaded into --tmp.dir.
    Downsample {
        /// Where blocks are downloaded and downsampled.
        #[arg(long = "tmp.dir", default_value_os_t = std::env::temp_dir().join("kiln-downsample"))]
        tmp_dir: std::path::PathBuf,
    },
    /// Upload the blocks of a local data directory (Prometheus's or Kiln's) to the bucket
    /// with the given external labels, as `thanos tools bucket upload-blocks` does:
    /// level-1 blocks, and compacted ones with --shipper.upload-compacted. Blocks already
    /// in the bucket are left as they are.
    UploadBlocks {
        /// The data directory holding the blocks.
        #[arg(long = "path", default_value = "./data")]
        path: PathBuf,
        /// An external label for the uploaded blocks, `name="value"`; repeat for more
        /// (at least one is needed).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Upload compacted blocks (level 2 and up) too.
        #[arg(long = "shipper.upload-compacted")]
        upload_compacted: bool,
    },
}

pub(crate) fn run(args: &BucketArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let bucket = args.objstore.bucket()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match &args.command {
        BucketCommand::Ls { output } => {
            let catalog = runtime.block_on(list_blocks(&bucket))?;
            for b in &catalog.blocks {
                match output.as_str() {
                    "" => writeln!(out, "{}", b.meta.ulid)?,
                    "wide" => writeln!(out, "{}", wide_line(b))?,
                    "json" => {
                        out.write_all(&b.meta.to_json())?;
                        writeln!(out)?;
                    }
                    other => anyhow::bail!("unknown output format {other:?}: use wide or json"),
                }
            }
            if !catalog.partial.is_empty() {
                eprintln!(
                    "{} block director{} without meta.json (uploads in progress or interrupted): {}",
                    catalog.partial.len(),
                    if catalog.partial.len() == 1 {
                        "y"
                    } else {
                        "ies"
                    },
                    join(catalog.partial.iter())
                );
            }
            for (id, reason) in &catalog.corrupt {
                eprintln!("block {id}: unreadable meta.json: {reason}");
            }
            Ok(())
        }
        BucketCommand::Inspect => {
            let catalog = runtime.block_on(list_blocks(&bucket))?;
            let mut blocks: Vec<&BucketBlock> = catalog.blocks.iter().collect();
            blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time, b.meta.ulid));
            out.write_all(inspect_table(&blocks).as_bytes())?;
            Ok(())
        }
        BucketCommand::Verify { issues, ids } => {
            let issues: Vec<Issue> = if issues.is_empty() {
                Issue::ALL.to_vec()
            } else {
                issues
                    .iter()
                    .map(|i| {
                        Issue::from_name(i).ok_or_else(|| {
                            anyhow::anyhow!(
                                "unknown issue {i:?}: overlapped_blocks, index_known_issues or missing_files"
                            )
                        })
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            let ids = parse_ids(ids)?;
            let catalog = runtime.block_on(list_blocks(&bucket))?;
            let findings = runtime.block_on(verify::verify(&bucket, &catalog, &issues, &ids))?;
            for f in &findings {
                writeln!(
                    out,
                    "{}: {}: {}",
                    f.issue.name(),
                    join(f.blocks.iter()),
                    f.what
                )?;
            }
            for (id, reason) in &catalog.corrupt {
                writeln!(out, "unreadable_meta: {id}: {reason}")?;
            }
            let checked = if ids.is_empty() {
                catalog.blocks.len()
            } else {
                ids.len()
            };
            let problems = findings.len() + catalog.corrupt.len();
            writeln!(out, "{checked} block(s) checked, {problems} problem(s)")?;
            if problems > 0 {
                out.flush()?;
                anyhow::bail!("the bucket has {problems} problem(s)");
            }
            Ok(())
        }
        BucketCommand::Mark {
            ids,
            marker,
            details,
            remove,
        } => {
            let kind = MarkerKind::from_file_name(marker).ok_or_else(|| {
                anyhow::anyhow!(
                    "--marker {marker:?}: one of deletion-mark.json, no-compact-mark.json, no-downsample-mark.json"
                )
            })?;
            for id in parse_ids(ids)? {
                if *remove {
                    let had = runtime.block_on(markers::unmark(&bucket, id, kind))?;
                    let what = if had { "removed" } else { "had no" };
                    writeln!(out, "block {id}: {what} {}", kind.file_name())?;
                } else {
                    let done = runtime.block_on(markers::mark(&bucket, id, kind, details))?;
                    let what = match done {
                        Marked::Set => "marked with",
                        Marked::AlreadyThere => "already has",
                    };
                    writeln!(out, "block {id}: {what} {}", kind.file_name())?;
                }
            }
            Ok(())
        }
        BucketCommand::Rewrite {
            ids,
            to_delete_config_file,
            to_delete_config,
            tmp_dir,
            apply,
            delete_blocks,
        } => {
            let text = match (to_delete_config_file, to_delete_config) {
                (Some(path), _) => std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?,
                (None, Some(text)) => text.clone(),
                (None, None) => anyhow::bail!(
                    "no deletions: give --rewrite.to-delete-config-file or --rewrite.to-delete-config"
                ),
            };
            let requests: Vec<DeletionRequest> = kiln_config::yaml::from_str(
                &text,
                "a deletion file is a list of `- matchers: ...` entries",
            )
            .context("the deletion file")?;
            if requests.is_empty() {
                anyhow::bail!("the deletion file lists no deletion");
            }
            let old = if *delete_blocks {
                OldBlock::Delete
            } else {
                OldBlock::Mark
            };
            for id in parse_ids(ids)? {
                let work = tmp_dir.join(format!("{id}-{}", ulid::Ulid::new()));
                let result = runtime.block_on(rewrite::rewrite_block(
                    &bucket, id, &requests, &work, !apply, old,
                ));
                let _ = std::fs::remove_dir_all(&work);
                let r = result.with_context(|| format!("rewriting block {id}"))?;
                let verb = if *apply { "rewritten" } else { "dry run" };
                writeln!(
                    out,
                    "block {id}: {verb}: series {} -> {}, samples {} -> {}{}",
                    r.series_before,
                    r.series_after,
                    r.samples_before,
                    r.samples_after,
                    match (r.new, *apply) {
                        (Some(new), _) => format!(", new block {new}"),
                        (None, true) if r.samples_after == r.samples_before =>
                            ", nothing to delete".to_owned(),
                        (None, true) => ", nothing left: the block goes".to_owned(),
                        (None, false) => String::new(),
                    }
                )?;
            }
            Ok(())
        }
        BucketCommand::Downsample { tmp_dir } => {
            let compactor = kiln_compact::Compactor::new(
                bucket,
                kiln_compact::CompactorOptions {
                    data_dir: tmp_dir.clone(),
                    // A tool acts on what the bucket holds now.
                    consistency_delay: 0,
                    ..kiln_compact::CompactorOptions::default()
                },
            );
            let stop = std::sync::atomic::AtomicBool::new(false);
            let report = runtime
                .block_on(compactor.downsample_once(&stop, &|_| {}))
                .context("downsampling")?;
            let _ = std::fs::remove_dir_all(tmp_dir.join("compact"));
            for (from, new, resolution) in &report.downsampled {
                writeln!(
                    out,
                    "block {from}: downsampled to {new} at resolution {}",
                    go_duration(*resolution)
                )?;
            }
            writeln!(
                out,
                "{} downsampled block(s) written",
                report.downsampled.len()
            )?;
            Ok(())
        }
        BucketCommand::UploadBlocks {
            path,
            labels,
            upload_compacted,
        } => {
            let labels = parse_labels(labels)?;
            if labels.is_empty() {
                anyhow::bail!(
                    "no external labels: give at least one --label name=\"value\" (they say whose blocks these are)"
                );
            }
            let shipper = Shipper::new(bucket, path, labels, *upload_compacted)
                .with_source(source::BUCKET_UPLOAD);
            let report = runtime
                .block_on(shipper.sync())
                .with_context(|| format!("uploading the blocks of {}", path.display()))?;
            writeln!(
                out,
                "uploaded {} block(s); {} already in the bucket",
                report.uploaded, report.already_there
            )?;
            Ok(())
        }
    }
}

/// The `inspect` table.
fn inspect_table(blocks: &[&BucketBlock]) -> String {
    let mut rows = vec![
        [
            "ULID",
            "FROM",
            "UNTIL",
            "RANGE",
            "UNTIL-DOWN",
            "#SERIES",
            "#SAMPLES",
            "#CHUNKS",
            "COMP-LEVEL",
            "COMP-FAILED",
            "LABELS",
            "RESOLUTION",
            "SOURCE",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for b in blocks {
        let m = &b.meta;
        let range = m.max_time - m.min_time;
        let resolution = b.thanos.downsample.resolution;
        let until_down = kiln_compact::compactor::downsample_span(resolution).map_or_else(
            || "-".to_owned(),
            |needed| go_duration((needed - range).max(0)),
        );
        let labels = b
            .thanos
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        rows.push(vec![
            m.ulid.to_string(),
            utc_seconds(m.min_time),
            utc_seconds(m.max_time),
            go_duration(range),
            until_down,
            m.stats.num_series.to_string(),
            m.stats.num_samples.to_string(),
            m.stats.num_chunks.to_string(),
            m.compaction.level.to_string(),
            m.compaction.failed.to_string(),
            labels,
            go_duration(resolution),
            b.thanos.source.clone(),
        ]);
    }
    crate::tsdb_tools::format::tab_align(&rows)
}

/// `2006-01-02 15:04:05` in UTC.
fn utc_seconds(ms: i64) -> String {
    let s = rfc3339_seconds(ms);
    s.trim_end_matches('Z').replacen('T', " ", 1)
}

/// Thanos's `wide` line, then Kiln's additions (labels and size).
fn wide_line(b: &BucketBlock) -> String {
    let m = &b.meta;
    let labels = b
        .thanos
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} -- {} - {} Diff: {}, Compaction: {}, Downsample: {}, Source: {}, Labels: {{{}}}, Size: {}",
        m.ulid,
        rfc3339_seconds(m.min_time),
        rfc3339_seconds(m.max_time),
        go_duration((m.max_time - m.min_time) / 1000 * 1000),
        m.compaction.level,
        b.thanos.downsample.resolution,
        b.thanos.source,
        labels,
        go_base2_bytes(b.listed_size()),
    )
}

fn rfc3339_seconds(ms: i64) -> String {
    kiln_model::calendar::rfc3339_nanos_utc(i128::from(ms.div_euclid(1000)) * 1_000_000_000)
}

fn join<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// `--id` flags as block ULIDs.
fn parse_ids(ids: &[String]) -> anyhow::Result<Vec<ulid::Ulid>> {
    ids.iter()
        .map(|id| {
            ulid::Ulid::from_string(id)
                .map_err(|e| anyhow::anyhow!("--id {id:?} is not a block ULID: {e}"))
        })
        .collect()
}

/// `name="value"` (or `name=value`) flags as a label map.
fn parse_labels(flags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for f in flags {
        let (name, value) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--label {f:?}: expected name=\"value\""))?;
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if !kiln_model::labels::is_valid_label_name(name) {
            anyhow::bail!("--label {f:?}: {name:?} is not a valid label name");
        }
        out.insert(name.to_owned(), value.to_owned());
    }
    Ok(out)
}
