//! `kiln tsdb analyze`: churn and cardinality of one block, in the layout of
//! `promtool tsdb analyze`.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use super::ToolError;
use super::format::go_duration;
use super::open_read_only;

/// Analyzes block `block_id` of `dir` (the newest block when `None`) and prints the top
/// `limit` entries of each list.
pub(crate) fn analyze(
    dir: &Path,
    block_id: Option<&str>,
    limit: usize,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    let db = open_read_only(dir)?;
    let blocks = db.blocks();
    let block = match block_id {
        Some(id) => blocks
            .iter()
            .find(|b| b.meta().ulid.to_string() == id)
            .ok_or_else(|| ToolError::BlockNotFound(id.to_owned()))?,
        None => blocks
            .last()
            .ok_or_else(|| ToolError::NoBlocks(dir.to_owned()))?,
    };
    let meta = block.meta();
    let index = block.index();
    let span = (meta.max_time.saturating_sub(meta.min_time)).max(1);
    writeln!(out, "Block ID: {}", meta.ulid)?;
    writeln!(
        out,
        "Duration: {}",
        go_duration(meta.max_time.saturating_sub(meta.min_time))
    )?;
    writeln!(out, "Series: {}", meta.stats.num_series)?;
    let names = index.label_names();
    writeln!(out, "Label names: {}", names.len())?;

    // Per label pair and name: how much of the block's time range the series carrying
    // it do not cover (churn), and how many series carry it.
    let mut pair_uncovered: HashMap<String, u64> = HashMap::new();
    let mut name_uncovered: HashMap<String, u64> = HashMap::new();
    let mut pair_count: HashMap<String, u64> = HashMap::new();
    let mut entries = 0u64;
    for id in index.all_postings()? {
        let (labels, chunks) = index.series(id)?;
        let covered = match (chunks.first(), chunks.last()) {
            (Some(f), Some(l)) => l.max_time.saturating_sub(f.min_time).max(0) as u64,
            _ => 0,
        };
        let uncovered = (span as u64).saturating_sub(covered);
        for l in labels.iter() {
            let key = format!("{}={}", l.name, l.value);
            *name_uncovered.entry(l.name.to_owned()).or_default() += uncovered;
            *pair_uncovered.entry(key.clone()).or_default() += uncovered;
            *pair_count.entry(key).or_default() += 1;
            entries += 1;
        }
    }
    writeln!(
        out,
        "Postings (unique label pairs): {}",
        pair_uncovered.len()
    )?;
    writeln!(out, "Postings entries (total label pairs): {entries}")?;

    let churn = |m: HashMap<String, u64>| -> Vec<(String, u64)> {
        m.into_iter()
            .map(|(k, v)| (k, (v as f64 / span as f64) as u64))
            .collect()
    };
    print_top(
        out,
        "Label pairs most involved in churning",
        churn(pair_uncovered),
        limit,
    )?;
    print_top(
        out,
        "Label names most involved in churning",
        churn(name_uncovered),
        limit,
    )?;
    print_top(
        out,
        "Most common label pairs",
        pair_count.into_iter().collect(),
        limit,
    )?;

    let mut value_lengths = Vec::new();
    let mut cardinalities = Vec::new();
    for n in &names {
        let values = index.label_values(n)?;
        value_lengths.push((n.clone(), values.iter().map(|v| v.len() as u64).sum()));
        cardinalities.push((n.clone(), values.len() as u64));
    }
    print_top(
        out,
        "Label names with highest cumulative label value length",
        value_lengths,
        limit,
    )?;
    print_top(out, "Highest cardinality labels", cardinalities, limit)?;

    let mut metrics = Vec::new();
    for name in index.label_values(kiln_model::METRIC_NAME)? {
        let n = index
            .postings_for_values(kiln_model::METRIC_NAME, |v| v == name)?
            .len() as u64;
        metrics.push((name, n));
    }
    print_top(out, "Highest cardinality metric names", metrics, limit)?;
    Ok(())
}

/// Prints `title` and the `limit` largest entries, largest first (ties by key).
fn print_top(
    out: &mut dyn Write,
    title: &str,
    mut items: Vec<(String, u64)>,
    limit: usize,
) -> Result<(), ToolError> {
    items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    writeln!(out, "\n{title}:")?;
    for (k, v) in items.into_iter().take(limit) {
        writeln!(out, "{v} {k}")?;
    }
    Ok(())
}
