//! The per-target scrape loop: fetch over HTTP on the target's schedule and store each
//! result with [`store_scrape`].
//!
//! Schedule: every `interval`, at a fixed offset within the interval derived from the
//! target's labels, so a fleet's scrapes spread over the interval instead of bunching up
//! (Prometheus does the same). Each fetch is bounded by the target's timeout and the
//! config's `body_size_limit`.
//!
//! Request: `Accept` from `scrape_protocols` (weighted as Prometheus writes it),
//! `Accept-Encoding: gzip` unless `enable_compression: false`,
//! `X-Prometheus-Scrape-Timeout-Seconds`, and basic or `Authorization` credentials
//! (files are read at each scrape, so rotating them needs no reload).
//!
//! When the loop stops (target gone, config changed, shutdown), the series of its last
//! scrape, report series included, get staleness markers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_config::ScrapeConfig;
use kiln_exposition::Format;
use kiln_http_client::{HttpClient, error_chain};
use kiln_model::{METRIC_NAME, STALE_NAN};
use kiln_storage::{Appendable, SampleValue};
use tokio::sync::watch;
use tracing::warn;

use crate::append::{
    EXTRA_REPORT_SERIES, REPORT_SERIES, ScrapeCache, ScrapeError, ScrapeTiming, store_scrape,
};
use crate::body_pool::BodyBufferPool;
use crate::status::{ScrapeRejections, SharedStatus, TargetHealth};
use crate::target::Target;

/// The `Accept` header for `protocols` (Prometheus's names), highest preference first.
/// Protocols Kiln cannot parse (protobuf) are left out.
pub fn accept_header(protocols: &[String]) -> String {
    let media = |p: &str| match p {
        "OpenMetricsText1.0.0" => Some("application/openmetrics-text;version=1.0.0"),
        "OpenMetricsText0.0.1" => Some("application/openmetrics-text;version=0.0.1"),
        "PrometheusText1.0.0" => Some("text/plain;version=1.0.0"),
        "PrometheusText0.0.4" => Some("text/plain;version=0.0.4"),
        _ => None,
    };
    let chosen: Vec<&str> = if protocols.is_empty() {
        kiln_config::DEFAULT_SCRAPE_PROTOCOLS.to_vec()
    } else {
        protocols
            .iter()
            .filter_map(|p| media(p).map(|_| p.as_str()))
            .collect()
    };
    // Prometheus starts from the number of protocols it knows (five) plus one, whatever
    // the list holds.
    let mut weight = 6;
    let mut out = String::new();
    for p in chosen {
        if let Some(m) = media(p) {
            out.push_str(&format!("{m};q=0.{weight},"));
            weight -= 1;
        }
    }
    out.push_str(&format!("*/*;q=0.{weight}"));
    out
}

/// The parser for a response's `Content-Type`, as Prometheus 3 picks it: OpenMetrics for
/// `application/openmetrics-text`, the text format for `text/plain`; for a blank,
/// unparsable or other type, the config's `fallback_scrape_protocol`, and without one the
/// scrape fails.
pub fn scrape_format(content_type: &str, fallback: &str) -> Result<Format, ScrapeError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/openmetrics-text" => return Ok(Format::OpenMetrics),
        "text/plain" => return Ok(Format::Text004),
        _ => {}
    }
    match fallback {
        "OpenMetricsText1.0.0" | "OpenMetricsText0.0.1" => Ok(Format::OpenMetrics),
        "PrometheusText0.0.4" | "PrometheusText1.0.0" => Ok(Format::Text004),
        "" if media.is_empty() => Err(ScrapeError::Fetch(
            "non-compliant scrape target sending blank Content-Type and no \
             fallback_scrape_protocol specified for target"
                .into(),
        )),
        "" => Err(ScrapeError::Fetch(format!(
            "received unsupported Content-Type {content_type:?} and no \
             fallback_scrape_protocol specified for target"
        ))),
        other => Err(ScrapeError::Fetch(format!(
            "fallback_scrape_protocol {other} is not supported by Kiln (protobuf exposition)"
        ))),
    }
}

/// Largest `Content-Length` a body buffer is sized for up front; a longer body grows it.
const MAX_PRESIZE_BYTES: u64 = 64 << 20;

/// Fetches one scrape into `body` (cleared first; the loop borrows it from the
/// [`BodyBufferPool`], so scrapes do not allocate and free a body-sized block each) and
/// returns the format its `Content-Type` says.
pub async fn fetch(
    client: &HttpClient,
    config: &ScrapeConfig,
    target: &Target,
    body: &mut Vec<u8>,
) -> Result<Format, ScrapeError> {
    body.clear();
    let fetch_err = |e: reqwest::Error| ScrapeError::Fetch(error_chain(&e));
    let timeout = target.timeout().as_std();
    let mut req = client
        .get(target.url())
        .map_err(|e| ScrapeError::Fetch(e.to_string()))?
        .timeout(timeout)
        .header("Accept", accept_header(&config.scrape_protocols))
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", timeout.as_secs_f64()),
        );
    if config.enable_compression {
        req = req.header("Accept-Encoding", "gzip");
    } else {
        req = req.header("Accept-Encoding", "identity");
    }
    let mut resp = req.send().await.map_err(fetch_err)?;
    if !resp.status().is_success() {
        return Err(ScrapeError::Fetch(format!(
            "server returned HTTP status {}",
            resp.status()
        )));
    }
    let content_type = resp
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let format = scrape_format(content_type, &config.fallback_scrape_protocol)?;
    let gzipped = resp
        .headers()
        .get("Content-Encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let limit = config.limits.body_size_limit.0;
    let too_big = || ScrapeError::BodySizeLimit { limit };
    if let Some(len) = resp.content_length() {
        let cap = if limit > 0 {
            limit.saturating_add(1)
        } else {
            u64::MAX
        };
        let want = len.min(cap).min(MAX_PRESIZE_BYTES) as usize;
        body.reserve_exact(want.saturating_sub(body.capacity()));
    }
    while let Some(chunk) = resp.chunk().await.map_err(fetch_err)? {
        body.extend_from_slice(&chunk);
        if limit > 0 && !gzipped && body.len() as u64 > limit {
            return Err(too_big());
        }
    }
    if gzipped {
        use std::io::Read;
        let mut plain = Vec::new();
        let reader = flate2::read::GzDecoder::new(&body[..]);
        // Read at most one byte past the limit, so a gzip bomb cannot exhaust memory.
        let cap = if limit > 0 { limit + 1 } else { u64::MAX };
        reader
            .take(cap)
            .read_to_end(&mut plain)
            .map_err(|e| ScrapeError::Fetch(format!("decompressing gzip body: {e}")))?;
        if limit > 0 && plain.len() as u64 > limit {
            return Err(too_big());
        }
        *body = plain;
    }
    Ok(format)
}

/// What a scrape loop is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopControl {
    Run,
    /// The target went away (reload, discovery): its series get staleness markers.
    Stop,
    /// The server is shutting down: no staleness markers, as in Prometheus, so the
    /// series continue without a gap after a restart (and alerts restore their state).
    Shutdown,
}

/// What all the scrape loops of a manager share.
#[derive(Clone)]
pub struct LoopShared {
    /// Body buffers, borrowed for one scrape at a time.
    pub buffers: Arc<BodyBufferPool>,
    /// The counters of samples the storage refused, by reason.
    pub rejections: Arc<ScrapeRejections>,
}

/// One target's loop. Runs until `stop` says to stop (or its sender is dropped).
pub async fn run_scrape_loop(
    client: HttpClient,
    config: Arc<ScrapeConfig>,
    target: Target,
    storage: Arc<dyn Appendable>,
    status: SharedStatus,
    shared: LoopShared,
    mut stop: watch::Receiver<LoopControl>,
) {
    let LoopShared {
        buffers,
        rejections,
    } = shared;
    let interval = target.interval().as_std().max(Duration::from_millis(1));
    let timeout_s = target.timeout().as_std().as_secs_f64();
    let series_labels = target.series_labels();
    // A stable offset in [0, interval) from the target's identity.
    let offset_ms = target.labels().hash() % interval.as_millis().max(1) as u64;
    let now_ms = kiln_model::calendar::now_ms();
    let interval_ms = interval.as_millis() as i64;
    let next_ms = (now_ms - now_ms.rem_euclid(interval_ms)) + offset_ms as i64;
    let first = if next_ms < now_ms {
        next_ms + interval_ms
    } else {
        next_ms
    };
    let start = Instant::now() + Duration::from_millis((first - now_ms).max(0) as u64);
    let mut ticker = tokio::time::interval_at(start.into(), interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let cache = Arc::new(std::sync::Mutex::new(ScrapeCache::default()));
    // Size of the last body, so the pool hands out a buffer that fits it.
    let mut last_body_len = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s != LoopControl::Run) => break,
        }
        let t = kiln_model::calendar::now_ms();
        let began = Instant::now();
        let mut body = buffers.take(last_body_len);
        let format = fetch(&client, &config, &target, &mut body).await;
        last_body_len = body.len();
        let duration_s = began.elapsed().as_secs_f64();
        let (config, labels, storage, cache) = (
            config.clone(),
            series_labels.clone(),
            storage.clone(),
            cache.clone(),
        );
        let stored = tokio::task::spawn_blocking(move || {
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            let mut app = storage.appender();
            let timing = ScrapeTiming {
                t,
                duration_s,
                timeout_s,
            };
            let input = format.map(|f| (&body[..], f));
            let stored = store_scrape(&mut *app, &config, &labels, &mut cache, input, timing)
                .map(|report| (report, cache.metadata()));
            (stored, body)
        })
        .await
        .map(|(stored, body)| {
            buffers.give_back(body);
            stored
        });
        match stored {
            Ok(Ok((report, metadata))) => {
                rejections.add(&report);
                if report.samples_out_of_bounds > 0 {
                    // Prometheus's words: one line per scrape, whatever the number.
                    warn!(
                        url = target.url(),
                        num_dropped = report.samples_out_of_bounds,
                        "Error on ingesting samples that are too old or are too far into the future"
                    );
                }
                let mut st = status.lock().unwrap_or_else(|e| e.into_inner());
                st.metadata = metadata;
                st.last_scrape_ms = t;
                st.last_scrape_duration_s = duration_s;
                match report.error {
                    Some(e) => {
                        tracing::debug!(url = target.url(), err = %e, "scrape failed");
                        st.health = TargetHealth::Down;
                        st.last_error = e.to_string();
                    }
                    None => {
                        st.health = TargetHealth::Up;
                        st.last_error.clear();
                    }
                }
            }
            Ok(Err(e)) => warn!(url = target.url(), err = %e, "storing a scrape failed"),
            Err(e) => warn!(url = target.url(), err = %e, "scrape task failed"),
        }
    }
    if *stop.borrow() == LoopControl::Shutdown {
        return;
    }
    // End of the target: make its series stale.
    let t = kiln_model::calendar::now_ms();
    let _ = tokio::task::spawn_blocking(move || {
        let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut app = storage.appender();
        for labels in cache.series() {
            let _ = app.append(0, labels, t, SampleValue::Float(STALE_NAN));
        }
        let extra: &[&str] = if config.extra_scrape_metrics {
            &EXTRA_REPORT_SERIES
        } else {
            &[]
        };
        for name in REPORT_SERIES.iter().chain(extra) {
            let mut b = series_labels.to_builder();
            b.set(METRIC_NAME, name);
            let _ = app.append(0, &b.build(), t, SampleValue::Float(STALE_NAN));
        }
        if let Err(e) = app.commit() {
            warn!(err = %e, "writing staleness markers of a stopped target failed");
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_like_prometheus_3() {
        let ok = |ct: &str, fallback: &str| scrape_format(ct, fallback).ok();
        assert_eq!(
            ok(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ""
            ),
            Some(Format::OpenMetrics)
        );
        assert_eq!(ok("text/plain; version=0.0.4", ""), Some(Format::Text004));
        assert_eq!(ok("Text/Plain", ""), Some(Format::Text004));
        assert_eq!(ok("", "PrometheusText0.0.4"), Some(Format::Text004));
        assert_eq!(
            ok("text/html", "OpenMetricsText1.0.0"),
            Some(Format::OpenMetrics)
        );
        let err = |ct: &str| scrape_format(ct, "").err().map(|e| e.to_string());
        assert!(err("").is_some_and(|e| e.contains("blank Content-Type")));
        assert!(err("text/html").is_some_and(|e| e.contains("unsupported Content-Type")));
    }

    #[test]
    fn accept_header_weights() {
        assert_eq!(
            accept_header(&[]),
            "application/openmetrics-text;version=1.0.0;q=0.6,\
             application/openmetrics-text;version=0.0.1;q=0.5,\
             text/plain;version=1.0.0;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        );
        assert_eq!(
            accept_header(&["PrometheusText0.0.4".to_owned()]),
            "text/plain;version=0.0.4;q=0.6,*/*;q=0.5"
        );
    }
}
