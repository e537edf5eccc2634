//! `/federate`: the latest sample of every series matching any `match[]` selector, in
//! the text exposition format, for another Prometheus (or Kiln) to scrape.
//!
//! What Prometheus does, and so what this does:
//! - The samples are the newest of each series within the lookback delta before now;
//!   a series whose newest sample is a staleness marker is left out.
//! - Series come grouped by metric name, each group headed by `# TYPE name untyped`
//!   (types are not stored, so all are untyped), with their timestamps.
//! - External labels are added to every series that lacks them, and `instance=""` when
//!   the external labels have no `instance`: a scraper with `honor_labels: true` then
//!   keeps the series' own `instance` or none, never its own target's.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_exposition::{
    Format, MetricFamily, MetricType, encode_text_family_header, encode_text_sample_with_extra,
};
use kiln_model::{Labels, Matcher, is_stale_nan};
use kiln_storage::{Querier, SelectHints, StorageError, ValueKind};

use crate::api::{ApiState, now_ms, params, selectors};

/// One series' newest sample.
struct Latest {
    labels: Labels,
    t: i64,
    v: f64,
}

/// Writes the federation answer for `matcher_sets` at `now` into `out`.
///
/// `external` are the external labels (any order); `lookback_ms` how far back a
/// series' newest sample may be.
pub fn write_federation(
    querier: &dyn Querier,
    matcher_sets: &[Vec<Matcher>],
    now: i64,
    lookback_ms: i64,
    external: &Labels,
    out: &mut Vec<u8>,
) -> Result<(), StorageError> {
    let mint = now - lookback_ms;
    let hints = SelectHints {
        start: mint,
        end: now,
        func: Some("series".to_owned()),
        ..SelectHints::default()
    };
    let mut latest: Vec<Latest> = Vec::new();
    for matchers in matcher_sets {
        let mut set = querier.select(true, Some(&hints), matchers);
        while let Some(series) = set.next() {
            let mut it = series.iterator();
            let mut newest = None;
            let mut kind = it.seek(mint);
            while kind == ValueKind::Float {
                let (t, v) = it.at();
                if t > now {
                    break;
                }
                newest = Some((t, v));
                kind = it.next();
            }
            if let Some(e) = it.err() {
                return Err(e.clone());
            }
            if let Some((t, v)) = newest
                && !is_stale_nan(v)
            {
                latest.push(Latest {
                    labels: series.labels().clone(),
                    t,
                    v,
                });
            }
        }
        if let Some(e) = set.err() {
            return Err(e.clone());
        }
    }
    // Several selectors may match one series: keep it once.
    latest.sort_by(|a, b| a.labels.cmp(&b.labels));
    latest.dedup_by(|a, b| a.labels == b.labels);
    // Grouped by name; sorting by labels already put equal names together, in order.

    // External labels plus `instance=""`, sorted by name, as Prometheus appends them.
    let mut added: Vec<(&str, &str)> = external.iter().map(|l| (l.name, l.value)).collect();
    if external.get("instance").is_none() {
        added.push(("instance", ""));
        added.sort_unstable();
    }
    let mut extra: Vec<(&str, &str)> = Vec::with_capacity(added.len());
    let mut last_name: Option<&str> = None;
    for s in &latest {
        let name = s.labels.metric_name().unwrap_or_default();
        if last_name != Some(name) {
            encode_text_family_header(
                out,
                &MetricFamily {
                    name,
                    help: None,
                    kind: MetricType::Unknown,
                    unit: None,
                },
            );
            last_name = Some(name);
        }
        extra.clear();
        extra.extend(added.iter().filter(|(n, _)| s.labels.get(n).is_none()));
        encode_text_sample_with_extra(out, &s.labels, &extra, s.v, Some(s.t));
    }
    Ok(())
}

/// `GET` or `POST /federate`.
pub(crate) async fn federate(
    State(state): State<Arc<ApiState>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(q, &headers, &body);
    let sets = match selectors(&p) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, e.message().to_owned()).into_response(),
    };
    let now = now_ms();
    let lookback = state.engine.opts.lookback_delta;
    let storage = state.storage.clone();
    let external = state.external_labels();
    let answer = tokio::task::spawn_blocking(move || {
        let querier = storage.querier(now - lookback, now)?;
        let mut out = Vec::new();
        write_federation(&*querier, &sets, now, lookback, &external, &mut out)?;
        Ok::<_, StorageError>(out)
    })
    .await;
    match answer {
        Ok(Ok(out)) => (
            [(header::CONTENT_TYPE, Format::Text004.content_type())],
            out,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("federation task failed: {e}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_model::{STALE_NAN, parse_selector};
    use kiln_storage::mem::MemStorage;
    use kiln_storage::{Appendable, Queryable, SampleValue};

    const NOW: i64 = 1_000_000;
    const LOOKBACK: i64 = 300_000;

    /// A series' labels and its samples.
    type SeriesData<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

    fn storage() -> MemStorage {
        let st = MemStorage::new();
        let mut app = st.appender();
        let series: &[SeriesData<'_>] = &[
            (
                &[("__name__", "up"), ("job", "node"), ("instance", "a:1")],
                &[(NOW - 20_000, 1.0), (NOW - 5_000, 0.0), (NOW + 5_000, 7.0)],
            ),
            (
                &[("__name__", "up"), ("job", "gpu"), ("cluster", "own")],
                &[(NOW - 1_000, 1.0)],
            ),
            // Newest sample is a staleness marker: left out.
            (
                &[("__name__", "up"), ("job", "gone")],
                &[(NOW - 9_000, 1.0), (NOW - 8_000, STALE_NAN)],
            ),
            // Older than the lookback delta: left out.
            (
                &[("__name__", "up"), ("job", "old")],
                &[(NOW - LOOKBACK - 1, 1.0)],
            ),
            (
                &[("__name__", "job:gpu_utilization:avg"), ("job_name", "llm")],
                &[(NOW - 30_000, 0.75)],
            ),
        ];
        for (labels, samples) in series {
            let l = Labels::from_pairs(labels);
            for &(t, v) in *samples {
                app.append(0, &l, t, SampleValue::Float(v)).expect("append");
            }
        }
        app.commit().expect("commit");
        drop(app);
        st
    }

    fn federate(selectors: &[&str], external: &[(&str, &str)]) -> String {
        let st = storage();
        let sets: Vec<Vec<Matcher>> = selectors
            .iter()
            .map(|s| parse_selector(s).expect("selector"))
            .collect();
        let querier = st.querier(NOW - LOOKBACK, NOW).expect("querier");
        let mut out = Vec::new();
        write_federation(
            &*querier,
            &sets,
            NOW,
            LOOKBACK,
            &Labels::from_pairs(external),
            &mut out,
        )
        .expect("federate");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn newest_samples_grouped_by_name_with_external_labels() {
        let got = federate(
            &["{__name__=~\"job:.*\"}", "up", "up{job=\"node\"}"],
            &[("cluster", "us-east"), ("region", "r1")],
        );
        let want = "\
# TYPE job:gpu_utilization:avg untyped
job:gpu_utilization:avg{job_name=\"llm\",cluster=\"us-east\",instance=\"\",region=\"r1\"} 0.75 970000
# TYPE up untyped
up{cluster=\"own\",job=\"gpu\",instance=\"\",region=\"r1\"} 1 999000
up{instance=\"a:1\",job=\"node\",cluster=\"us-east\",region=\"r1\"} 0 995000
";
        assert_eq!(got, want);
    }

    #[test]
    fn external_instance_is_used_and_no_match_is_empty() {
        let got = federate(&["{job=\"node\"}"], &[("instance", "global")]);
        assert_eq!(
            got,
            "# TYPE up untyped\nup{instance=\"a:1\",job=\"node\"} 0 995000\n"
        );
        let got = federate(&["{job=\"gpu\"}"], &[("instance", "global")]);
        assert_eq!(
            got,
            "# TYPE up untyped\nup{cluster=\"own\",job=\"gpu\",instance=\"global\"} 1 999000\n"
        );
        assert_eq!(federate(&["{job=\"none\"}"], &[]), "");
        assert_eq!(federate(&[], &[]), "");
    }
}
