//! The write contract.

use kiln_model::{Labels, Timestamp};

use crate::StorageError;

/// An opaque, storage-assigned handle to a series that makes repeated appends to the same
/// series skip the label lookup. `0` means "not known": pass it on the first append and
/// keep what `append` returns. A ref is valid only for the storage that returned it and
/// may become stale (the series was garbage-collected); an implementation that sees a
/// stale or foreign ref falls back to the labels, so passing a wrong ref is never unsafe.
pub type SeriesRef = u64;

/// A sample's value. An enum from day one so native histograms join later without
/// changing the [`Appender`] signature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleValue {
    Float(f64),
}

/// One write transaction: a scrape or one remote-write request.
///
/// Samples become visible to queriers and durable (logged to the WAL) only at
/// [`commit`](Appender::commit); [`rollback`](Appender::rollback) discards them. Errors
/// from `append` reject that one sample (out of order, duplicate, out of bounds) and
/// leave the transaction usable, so a caller can count rejects and go on.
///
/// An appender is used from one thread at a time (`Send`, not `Sync`); many appenders
/// may be open at once on the same storage.
pub trait Appender: Send {
    /// Adds one sample. `series_ref` is a hint (see [`SeriesRef`]); `labels` must be the
    /// series' full label set and is used when the ref is 0 or unknown. Returns the ref
    /// to use next time.
    ///
    /// `labels` may be empty with a non-zero ref this storage returned: the sample then
    /// goes to that series (rejection errors still name the series' labels), or, when
    /// the storage no longer knows the ref, is refused with
    /// [`StorageError::UnknownSeriesRef`] so the caller can retry with the labels. An
    /// implementation that only ever returns 0 never sees such a call.
    fn append(
        &mut self,
        series_ref: SeriesRef,
        labels: &Labels,
        t: Timestamp,
        v: SampleValue,
    ) -> Result<SeriesRef, StorageError>;

    /// Makes every sample appended so far durable and visible, atomically for readers
    /// that start after it returns.
    fn commit(&mut self) -> Result<(), StorageError>;

    /// Discards every sample appended since the last commit.
    fn rollback(&mut self) -> Result<(), StorageError>;
}

/// A storage that accepts writes.
pub trait Appendable: Send + Sync {
    fn appender(&self) -> Box<dyn Appender + '_>;
}
