//! `kiln tsdb list`: the blocks of a data directory, as `promtool tsdb list` prints them.

use std::io::Write;
use std::path::Path;

use super::ToolError;
use super::format::{go_base2_bytes, go_duration, go_time_utc, tab_align};
use super::open_read_only;
use kiln_tsdb::block::BlockReader;

/// Prints every readable block of `dir`, oldest first. Unreadable blocks are reported on
/// stderr and skipped.
pub(crate) fn list_blocks(dir: &Path, human: bool, out: &mut dyn Write) -> Result<(), ToolError> {
    let db = open_read_only(dir)?;
    let blocks = db.blocks();
    let refs: Vec<&BlockReader> = blocks.iter().map(|b| b.as_ref()).collect();
    print_blocks_readers(&refs, human, out)
}

/// Prints blocks that were just written to `dirs`.
pub(crate) fn print_blocks(
    dirs: &[std::path::PathBuf],
    human: bool,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    let blocks = dirs
        .iter()
        .map(BlockReader::open)
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&BlockReader> = blocks.iter().collect();
    print_blocks_readers(&refs, human, out)
}

fn print_blocks_readers(
    blocks: &[&BlockReader],
    human: bool,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    let time = |t: i64| if human { go_time_utc(t) } else { t.to_string() };
    let mut rows = vec![
        [
            "BLOCK ULID",
            "MIN TIME",
            "MAX TIME",
            "DURATION",
            "NUM SAMPLES",
            "NUM CHUNKS",
            "NUM SERIES",
            "SIZE",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
    ];
    for b in blocks {
        let m = b.meta();
        let size = kiln_tsdb::db::dir_size(b.dir());
        rows.push(vec![
            m.ulid.to_string(),
            time(m.min_time),
            time(m.max_time),
            go_duration(m.max_time.saturating_sub(m.min_time)),
            m.stats.num_samples.to_string(),
            m.stats.num_chunks.to_string(),
            m.stats.num_series.to_string(),
            if human {
                go_base2_bytes(size)
            } else {
                size.to_string()
            },
        ]);
    }
    out.write_all(tab_align(&rows).as_bytes())?;
    Ok(())
}
