//! Reading the head.

use kiln_model::{Matcher, Timestamp};
use kiln_storage::{
    ErrorSeriesSet, Querier, SelectHints, SeriesSet, StorageError, VecSeriesSet,
    sorted_label_names, sorted_label_values,
};

use super::Head;
use super::series::HeadChunkData;
use crate::querier::{ChunkView, ChunkedSeries};

/// A querier over the head for `[mint, maxt]`. Each `select` snapshots the matching
/// series' chunks, so results reflect the commits done before the call.
pub struct HeadQuerier<'h> {
    head: &'h Head,
    mint: Timestamp,
    maxt: Timestamp,
}

impl<'h> HeadQuerier<'h> {
    pub(super) fn new(head: &'h Head, mint: Timestamp, maxt: Timestamp) -> Self {
        HeadQuerier { head, mint, maxt }
    }

    /// Whether `[mint, maxt]` overlaps the head's time range at all.
    fn overlaps_head(&self) -> bool {
        match (self.head.min_time(), self.head.max_time()) {
            (Some(min), Some(max)) => min <= self.maxt && max >= self.mint,
            _ => false,
        }
    }

    /// Ids of the matching series with samples in range.
    pub(crate) fn matching_ids(&self, matchers: &[Matcher]) -> Vec<u64> {
        let ids = self.head.postings.read().select(matchers);
        ids.into_iter()
            .filter(|&id| {
                self.head
                    .series_by_id(id)
                    .is_some_and(|s| s.data.lock().has_samples_in(self.mint, self.maxt))
            })
            .collect()
    }

    /// Matching series with samples in range, in label order.
    pub(crate) fn snapshot(
        &self,
        matchers: &[Matcher],
    ) -> Result<Vec<ChunkedSeries<HeadChunkData>>, StorageError> {
        let ids = self.head.postings.read().select(matchers);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(s) = self.head.series_by_id(id) else {
                continue;
            };
            let chunks = s
                .data
                .lock()
                .chunks_in(self.mint, self.maxt, self.head.chunk_disk.as_ref())
                .map_err(|e| {
                    StorageError::backend(
                        e.kind(),
                        format!("reading head chunks of series {}", s.labels),
                        e,
                    )
                })?;
            if chunks.is_empty() {
                continue;
            }
            out.push(ChunkedSeries {
                labels: s.labels.clone(),
                chunks: chunks
                    .into_iter()
                    .map(|c| ChunkView {
                        min_time: c.min_time,
                        max_time: c.max_time,
                        data: c.data,
                    })
                    .collect(),
                mint: self.mint,
                maxt: self.maxt,
                deleted: self.head.tombstones_for(id),
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }
}

impl Querier for HeadQuerier<'_> {
    fn select<'a>(
        &'a self,
        _sorted: bool,
        _hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet<'a> + 'a> {
        match self.snapshot(matchers) {
            Ok(series) => Box::new(VecSeriesSet::new(series, Vec::new())),
            Err(e) => Box::new(ErrorSeriesSet(e)),
        }
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        if !self.overlaps_head() {
            return Ok((Vec::new(), Vec::new()));
        }
        if matchers.is_empty() {
            let mut values: Vec<String> = self
                .head
                .postings
                .read()
                .values(name)
                .into_iter()
                .map(str::to_owned)
                .collect();
            values.sort_unstable();
            return Ok((values, Vec::new()));
        }
        let series = self.snapshot(matchers)?;
        Ok((
            sorted_label_values(series.iter().map(|s| &s.labels), name),
            Vec::new(),
        ))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        if !self.overlaps_head() {
            return Ok((Vec::new(), Vec::new()));
        }
        if matchers.is_empty() {
            let mut names: Vec<String> = self
                .head
                .postings
                .read()
                .names()
                .map(str::to_owned)
                .collect();
            names.sort_unstable();
            return Ok((names, Vec::new()));
        }
        let series = self.snapshot(matchers)?;
        Ok((
            sorted_label_names(series.iter().map(|s| &s.labels)),
            Vec::new(),
        ))
    }
}
