//! Local storage with the `remote_read` endpoints merged in, as every PromQL query (API,
//! rules, federation) sees it.
//!
//! As in Prometheus: an endpoint without `read_recent` is only asked about times before
//! the oldest local sample (local storage is complete after it), and only for
//! selections holding its `required_matchers`. A failing endpoint makes a warning, not a
//! failed query. Remote series merge with local ones by labels; where both have a sample
//! at the same timestamp, the local one wins.

use std::sync::Arc;

use kiln_model::{Matcher, Timestamp};
use kiln_storage::merge::MergeQuerier;
use kiln_storage::{
    Querier, Queryable, SelectHints, SeriesSet, StorageError, VecSeries, VecSeriesSet,
};
use parking_lot::RwLock;

use super::client::RemoteReadClient;

/// The oldest sample local storage holds (`None` when it holds nothing).
pub type LocalStartTime = Arc<dyn Fn() -> Option<Timestamp> + Send + Sync>;

/// Local storage plus the configured remote-read endpoints. See the module docs.
pub struct FanoutQueryable {
    local: Arc<dyn Queryable>,
    local_start: LocalStartTime,
    remotes: RwLock<Arc<Vec<Arc<RemoteReadClient>>>>,
}

impl FanoutQueryable {
    pub fn new(local: Arc<dyn Queryable>, local_start: LocalStartTime) -> FanoutQueryable {
        FanoutQueryable {
            local,
            local_start,
            remotes: RwLock::new(Arc::new(Vec::new())),
        }
    }

    /// Replaces the endpoints (at start and on every reload).
    pub fn set_remotes(&self, remotes: Vec<RemoteReadClient>) {
        *self.remotes.write() = Arc::new(remotes.into_iter().map(Arc::new).collect());
    }
}

impl Queryable for FanoutQueryable {
    fn querier(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<Box<dyn Querier + '_>, StorageError> {
        let remotes = self.remotes.read().clone();
        let local = self.local.querier(mint, maxt)?;
        if remotes.is_empty() {
            return Ok(local);
        }
        let start = (self.local_start)();
        let mut queriers: Vec<Box<dyn Querier + '_>> = vec![local];
        for r in remotes.iter() {
            let mut r_maxt = maxt;
            if !r.config.read_recent
                && let Some(start) = start
            {
                if mint > start {
                    continue;
                }
                r_maxt = maxt.min(start);
            }
            queriers.push(Box::new(RemoteQuerier {
                client: r.clone(),
                mint,
                maxt: r_maxt,
            }));
        }
        Ok(Box::new(MergeQuerier::new(queriers)))
    }
}

/// One endpoint over one time range.
struct RemoteQuerier {
    client: Arc<RemoteReadClient>,
    mint: Timestamp,
    maxt: Timestamp,
}

impl Querier for RemoteQuerier {
    fn select<'a>(
        &'a self,
        _sorted: bool,
        hints: Option<&SelectHints>,
        matchers: &[Matcher],
    ) -> Box<dyn SeriesSet<'a> + 'a> {
        if !self.client.wanted(matchers) {
            return Box::new(VecSeriesSet::<VecSeries>::new(Vec::new(), Vec::new()));
        }
        match self.client.read(self.mint, self.maxt, matchers, hints) {
            Ok(series) => Box::new(VecSeriesSet::new(series, Vec::new())),
            Err(e) => Box::new(VecSeriesSet::<VecSeries>::new(
                Vec::new(),
                vec![e.to_string()],
            )),
        }
    }

    /// Remote read has no label API: names and values come from local storage only.
    fn label_values(
        &self,
        _name: &str,
        _matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        Ok((Vec::new(), Vec::new()))
    }

    fn label_names(
        &self,
        _matchers: &[Matcher],
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        Ok((Vec::new(), Vec::new()))
    }
}
