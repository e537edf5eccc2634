//! Remote read, both ends.
//!
//! - [`serve`]: `/api/v1/read`, answering from local storage with samples or with the
//!   stored chunks.
//! - [`client`]: one `remote_read` endpoint, asked for the series of a selection.
//! - [`fanout`]: local storage with the endpoints merged in, for PromQL.
//! - `frames`: the length + CRC framing of streamed answers.

pub mod client;
pub mod fanout;
mod frames;
pub mod serve;

pub use client::{RemoteReadClient, decode_answer};
pub use fanout::{FanoutQueryable, LocalStartTime};
pub use frames::FrameError;
pub use serve::{
    ReadAnswer, ReadError, ReadLimits, ReadPlan, ReadStorage, STREAMED_CONTENT_TYPE, serve,
};

/// The User-Agent of remote requests.
pub(crate) const USER_AGENT: &str = concat!("Kiln/", env!("CARGO_PKG_VERSION"));
