//! What the targets API shows: each active target's health and last scrape, and the
//! targets relabeling dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kiln_model::Labels;

use crate::append::{ScrapeReport, TargetMetadata};
use crate::target::Target;

/// A target's health, as the targets API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetHealth {
    /// Not scraped yet.
    #[default]
    Unknown,
    Up,
    Down,
}

impl TargetHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetHealth::Unknown => "unknown",
            TargetHealth::Up => "up",
            TargetHealth::Down => "down",
        }
    }
}

/// The outcome of a target's last scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScrapeStatus {
    pub health: TargetHealth,
    /// Empty when the last scrape worked.
    pub last_error: String,
    /// When the last scrape started, Unix ms; 0 before the first.
    pub last_scrape_ms: i64,
    pub last_scrape_duration_s: f64,
    /// Metadata of the families of the last successful scrape.
    pub metadata: TargetMetadata,
}

/// Shared between a scrape loop (writer) and the targets view (reader).
pub type SharedStatus = Arc<Mutex<ScrapeStatus>>;

/// One active target as the targets API lists it.
#[derive(Debug, Clone)]
pub struct ActiveTarget {
    pub scrape_pool: String,
    pub target: Target,
    pub status: ScrapeStatus,
}

/// The targets of every scrape pool at one moment.
#[derive(Debug, Clone, Default)]
pub struct TargetsSnapshot {
    pub active: Vec<ActiveTarget>,
    /// Scrape pool and discovered labels of each dropped target kept for display (at
    /// most `keep_dropped_targets` per pool when that is set).
    pub dropped: Vec<(String, Labels)>,
    /// Dropped targets per scrape pool, all of them counted.
    pub dropped_counts: Vec<(String, usize)>,
    /// Samples refused since start: out of bounds, out of order, duplicate timestamp.
    pub rejected_out_of_bounds: u64,
    pub rejected_out_of_order: u64,
    pub rejected_duplicate_timestamp: u64,
}

#[derive(Debug, Default)]
pub(crate) struct TargetsState {
    pub(crate) active: Vec<(String, Target, SharedStatus)>,
    pub(crate) dropped: Vec<(String, Labels)>,
    pub(crate) dropped_counts: Vec<(String, usize)>,
}

/// Samples of scrapes the storage refused since start, by reason: Prometheus's
/// `prometheus_target_scrapes_sample_{out_of_bounds,out_of_order,duplicate_timestamp}_total`.
/// Every scrape loop adds to the one set its manager owns.
#[derive(Debug, Default)]
pub struct ScrapeRejections {
    pub out_of_bounds: AtomicU64,
    pub out_of_order: AtomicU64,
    pub duplicate_timestamp: AtomicU64,
}

impl ScrapeRejections {
    /// Adds the refusals of one scrape.
    pub(crate) fn add(&self, report: &ScrapeReport) {
        self.out_of_bounds
            .fetch_add(report.samples_out_of_bounds, Ordering::Relaxed);
        self.out_of_order
            .fetch_add(report.samples_out_of_order, Ordering::Relaxed);
        self.duplicate_timestamp
            .fetch_add(report.samples_duplicate_timestamp, Ordering::Relaxed);
    }
}

/// A read-only handle on the scrape manager's targets, cheap to clone and usable from
/// any thread.
#[derive(Debug, Clone, Default)]
pub struct TargetsView {
    pub(crate) state: Arc<RwLock<TargetsState>>,
    pub(crate) rejections: Arc<ScrapeRejections>,
}

impl TargetsView {
    /// The targets now, sorted by pool and labels.
    pub fn snapshot(&self) -> TargetsSnapshot {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut active: Vec<ActiveTarget> = state
            .active
            .iter()
            .map(|(pool, target, status)| ActiveTarget {
                scrape_pool: pool.clone(),
                target: target.clone(),
                status: status.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            })
            .collect();
        active.sort_by(|a, b| {
            (&a.scrape_pool, a.target.labels()).cmp(&(&b.scrape_pool, b.target.labels()))
        });
        let r = &self.rejections;
        TargetsSnapshot {
            active,
            dropped: state.dropped.clone(),
            dropped_counts: state.dropped_counts.clone(),
            rejected_out_of_bounds: r.out_of_bounds.load(Ordering::Relaxed),
            rejected_out_of_order: r.out_of_order.load(Ordering::Relaxed),
            rejected_duplicate_timestamp: r.duplicate_timestamp.load(Ordering::Relaxed),
        }
    }
}
