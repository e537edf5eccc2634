//! `kiln tsdb dump`: every sample of a data directory (blocks and WAL) in the line format
//! of `promtool tsdb dump`: `{labels} value timestamp`.

use std::io::Write;
use std::path::Path;

use kiln_model::{Matcher, format_go_float};
use kiln_storage::merge::MergeSeriesSet;
use kiln_storage::{Querier, SeriesSet, ValueKind};

use super::ToolError;
use super::open_read_only;

/// Dumps samples in `[mint, maxt]` of the series matching any of `selectors` (all series
/// when empty), sorted by labels then time. Warnings (skipped blocks, a WAL corruption
/// that stopped replay) go to stderr.
pub(crate) fn dump(
    dir: &Path,
    mint: i64,
    maxt: i64,
    selectors: &[Vec<Matcher>],
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    let db = open_read_only(dir)?;
    let q = db.querier(mint, maxt);
    let all: [Vec<Matcher>; 1] = [Vec::new()];
    let selectors = if selectors.is_empty() {
        &all[..]
    } else {
        selectors
    };
    let sets: Vec<Box<dyn SeriesSet<'_> + '_>> =
        selectors.iter().map(|m| q.select(true, None, m)).collect();
    let mut set = MergeSeriesSet::new(sets);
    let mut line = String::new();
    while let Some(series) = set.next() {
        let labels = series.labels().to_string();
        let mut it = series.iterator();
        while it.next() == ValueKind::Float {
            let (t, v) = it.at();
            line.clear();
            line.push_str(&labels);
            line.push(' ');
            line.push_str(&format_go_float(v));
            line.push(' ');
            line.push_str(&t.to_string());
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        if let Some(e) = it.err() {
            return Err(ToolError::Read {
                what: format!("series {labels}"),
                source: e.clone(),
            });
        }
    }
    if let Some(e) = set.err() {
        return Err(ToolError::Read {
            what: "series".into(),
            source: e.clone(),
        });
    }
    for w in set.warnings() {
        eprintln!("warning: {w}");
    }
    Ok(())
}
