//! Scrape storage semantics over the in-memory storage.

use super::cache::{CACHE_KEEP_SCRAPES, text_key};
use super::*;
use kiln_config::Config;
use kiln_model::{Matcher, is_stale_nan, parse_selector};
use kiln_storage::mem::MemStorage;
use kiln_storage::{Appendable, Queryable, ValueKind};

fn config(extra: &str) -> ScrapeConfig {
    Config::parse(
        &format!("scrape_configs:\n  - job_name: node\n{extra}"),
        "test.yml",
    )
    .expect("config")
    .scrape_configs
    .remove(0)
}

fn target() -> Labels {
    Labels::from_pairs(&[("instance", "a:1"), ("job", "node")])
}

/// Every sample of the series matching `selector`, by series.
fn dump(st: &MemStorage, selector: &str) -> Vec<(String, Vec<(i64, String)>)> {
    let matchers: Vec<Matcher> = parse_selector(selector).expect("selector");
    let q = st.querier(i64::MIN / 2, i64::MAX / 2).expect("querier");
    let mut set = q.select(true, None, &matchers);
    let mut out = Vec::new();
    while let Some(s) = set.next() {
        let mut it = s.iterator();
        let mut samples = Vec::new();
        while it.next() == ValueKind::Float {
            let (t, v) = it.at();
            samples.push((
                t,
                if is_stale_nan(v) {
                    "stale".into()
                } else {
                    v.to_string()
                },
            ));
        }
        out.push((s.labels().to_string(), samples));
    }
    out
}

fn scrape(
    st: &MemStorage,
    cfg: &ScrapeConfig,
    cache: &mut ScrapeCache,
    body: &str,
    t: i64,
) -> ScrapeReport {
    let mut app = st.appender();
    store_scrape(
        &mut *app,
        cfg,
        &target(),
        cache,
        Ok((body.as_bytes(), Format::Text004)),
        ScrapeTiming {
            t,
            duration_s: 0.5,
            timeout_s: 10.0,
        },
    )
    .expect("store")
}

#[test]
fn samples_report_and_staleness() {
    let st = MemStorage::new();
    let cfg = config("");
    let mut cache = ScrapeCache::default();
    let r = scrape(
        &st,
        &cfg,
        &mut cache,
        "# TYPE a gauge\na 1\nb{x=\"1\"} 2\n",
        1000,
    );
    assert_eq!(r.samples_scraped, 2);
    assert_eq!(r.series_added, 2);
    assert!(r.error.is_none());
    let meta = cache.metadata();
    assert_eq!(meta["a"].kind, kiln_exposition::MetricType::Gauge);
    assert!(!meta.contains_key("b"), "b has no metadata lines");
    let r = scrape(&st, &cfg, &mut cache, "a 3\n", 2000);
    assert_eq!(r.series_added, 0);
    assert_eq!(
        dump(&st, "{__name__=~\"a|b\"}"),
        vec![
            (
                "{__name__=\"a\", instance=\"a:1\", job=\"node\"}".to_owned(),
                vec![(1000, "1".to_owned()), (2000, "3".to_owned())]
            ),
            (
                "{__name__=\"b\", instance=\"a:1\", job=\"node\", x=\"1\"}".to_owned(),
                vec![(1000, "2".to_owned()), (2000, "stale".to_owned())]
            ),
        ]
    );
    assert_eq!(
        dump(&st, "up"),
        vec![(
            "{__name__=\"up\", instance=\"a:1\", job=\"node\"}".to_owned(),
            vec![(1000, "1".to_owned()), (2000, "1".to_owned())]
        )]
    );
    assert_eq!(
        dump(&st, "scrape_samples_scraped")[0].1,
        vec![(1000, "2".to_owned()), (2000, "1".to_owned())]
    );
    assert_eq!(
        dump(&st, "scrape_duration_seconds")[0].1,
        vec![(1000, "0.5".to_owned()), (2000, "0.5".to_owned())]
    );

    // A failed scrape: up 0, and every series of the last scrape goes stale.
    let mut app = st.appender();
    let r = store_scrape(
        &mut *app,
        &cfg,
        &target(),
        &mut cache,
        Err(ScrapeError::Fetch("connection refused".into())),
        ScrapeTiming {
            t: 3000,
            duration_s: 0.1,
            timeout_s: 10.0,
        },
    )
    .expect("store");
    drop(app);
    assert!(r.error.is_some());
    assert_eq!(
        dump(&st, "a")[0].1.last(),
        Some(&(3000, "stale".to_owned()))
    );
    assert_eq!(dump(&st, "up")[0].1.last(), Some(&(3000, "0".to_owned())));
    assert!(cache.is_empty());
}

#[test]
fn target_labels_clash_and_honor_labels() {
    let body = "m{job=\"exp\",instance=\"i\",exported_job=\"x\"} 1\n";
    let st = MemStorage::new();
    scrape(&st, &config(""), &mut ScrapeCache::default(), body, 1000);
    assert_eq!(
        dump(&st, "m")[0].0,
        "{__name__=\"m\", exported_exported_job=\"exp\", exported_instance=\"i\", exported_job=\"x\", instance=\"a:1\", job=\"node\"}"
    );
    let st = MemStorage::new();
    scrape(
        &st,
        &config("    honor_labels: true\n"),
        &mut ScrapeCache::default(),
        "m{job=\"exp\"} 1\n",
        1000,
    );
    assert_eq!(
        dump(&st, "m")[0].0,
        "{__name__=\"m\", instance=\"a:1\", job=\"exp\"}"
    );
}

#[test]
fn metric_relabeling_and_timestamps() {
    let cfg = config(
        "    honor_timestamps: true\n    metric_relabel_configs:\n      - {source_labels: [__name__], regex: 'go_.*', action: drop}\n      - {regex: 'pid', action: labeldrop}\n",
    );
    let st = MemStorage::new();
    let mut cache = ScrapeCache::default();
    let r = scrape(
        &st,
        &cfg,
        &mut cache,
        "go_goroutines 10\nproc{pid=\"7\"} 1 500\nother 2\n",
        1000,
    );
    assert_eq!((r.samples_scraped, r.samples_post_relabel), (3, 2));
    assert!(dump(&st, "go_goroutines").is_empty());
    assert_eq!(
        dump(&st, "proc"),
        vec![(
            "{__name__=\"proc\", instance=\"a:1\", job=\"node\"}".to_owned(),
            vec![(500, "1".to_owned())]
        )]
    );
    // A series with its own timestamp is not made stale when it disappears.
    scrape(&st, &cfg, &mut cache, "other 3\n", 2000);
    assert_eq!(dump(&st, "proc")[0].1, vec![(500, "1".to_owned())]);

    let st = MemStorage::new();
    let cfg = config("    honor_timestamps: false\n");
    scrape(&st, &cfg, &mut ScrapeCache::default(), "proc 1 500\n", 1000);
    assert_eq!(dump(&st, "proc")[0].1, vec![(1000, "1".to_owned())]);
}

#[test]
fn limits_fail_the_whole_scrape() {
    let cases = [
        (
            "    sample_limit: 2\n",
            "a 1\nb 1\nc 1\n",
            "sample_limit exceeded",
        ),
        (
            "    label_limit: 3\n",
            "a{x=\"1\",y=\"2\"} 1\n",
            "label_limit exceeded",
        ),
        (
            "    label_name_length_limit: 4\n",
            "a{long_name=\"1\"} 1\n",
            "label_name_length_limit exceeded",
        ),
        (
            "    label_value_length_limit: 3\n",
            "a{x=\"abcd\"} 1\n",
            "label_value_length_limit exceeded",
        ),
        ("", "a 1\nb{ 2\n", "line 2"),
    ];
    for (extra, body, want) in cases {
        let st = MemStorage::new();
        let r = scrape(&st, &config(extra), &mut ScrapeCache::default(), body, 1000);
        let err = r.error.expect("scrape error").to_string();
        assert!(err.contains(want), "{extra}: {err}");
        assert!(
            dump(&st, "{__name__=~\"a|b|c\"}").is_empty(),
            "{extra}: samples kept"
        );
        assert_eq!(dump(&st, "up")[0].1, vec![(1000, "0".to_owned())]);
    }
    // Within the limits all is kept.
    let st = MemStorage::new();
    let r = scrape(
        &st,
        &config("    sample_limit: 3\n"),
        &mut ScrapeCache::default(),
        "a 1\nb 1\nc 1\n",
        1000,
    );
    assert!(r.error.is_none());
}

#[test]
fn honor_labels_counts_empty_labels_as_present() {
    // Federation output: `instance=""` means "no instance", and the scraping target's
    // instance must not be added.
    let st = MemStorage::new();
    scrape(
        &st,
        &config("    honor_labels: true\n"),
        &mut ScrapeCache::default(),
        "job:rate:sum{instance=\"\",job=\"api\"} 4\n",
        1000,
    );
    assert_eq!(
        dump(&st, "{__name__=\"job:rate:sum\"}")[0].0,
        "{__name__=\"job:rate:sum\", job=\"api\"}"
    );
}

#[test]
fn extra_scrape_metrics() {
    let st = MemStorage::new();
    let cfg = config("    extra_scrape_metrics: true\n    sample_limit: 50\n");
    scrape(&st, &cfg, &mut ScrapeCache::default(), "a 1\n", 1000);
    assert_eq!(
        dump(&st, "scrape_timeout_seconds")[0].1,
        vec![(1000, "10".to_owned())]
    );
    assert_eq!(
        dump(&st, "scrape_sample_limit")[0].1,
        vec![(1000, "50".to_owned())]
    );
    assert_eq!(
        dump(&st, "scrape_body_size_bytes")[0].1,
        vec![(1000, "4".to_owned())]
    );
    // Without the option, none of them.
    let st = MemStorage::new();
    scrape(&st, &config(""), &mut ScrapeCache::default(), "a 1\n", 1000);
    assert!(dump(&st, "scrape_timeout_seconds").is_empty());
}

#[test]
fn cached_series_texts_behave_like_fresh_ones() {
    let st = MemStorage::new();
    let cfg = config(
        "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: 'drop_me'\n        action: drop\n",
    );
    let mut cache = ScrapeCache::default();
    let body = "m{x=\"1\",y=\"2\"} 1\ndrop_me 5\nm{x=\"2\"} 3\n";
    let r = scrape(&st, &cfg, &mut cache, body, 1000);
    assert_eq!(
        (r.samples_scraped, r.samples_post_relabel, r.series_added),
        (3, 2, 2)
    );
    // The same scrape again comes from the cache: same counts, no new series.
    let r = scrape(&st, &cfg, &mut cache, body, 2000);
    assert_eq!(
        (r.samples_scraped, r.samples_post_relabel, r.series_added),
        (3, 2, 0)
    );
    // The same series written with its labels in another order is the same series (no
    // staleness marker), though a new text counts as added, as in Prometheus; the one
    // left out goes stale.
    let r = scrape(
        &st,
        &cfg,
        &mut cache,
        "m{y=\"2\",x=\"1\"} 4\ndrop_me 6\n",
        3000,
    );
    assert_eq!(
        (r.samples_scraped, r.samples_post_relabel, r.series_added),
        (2, 1, 1)
    );
    assert_eq!(
        dump(&st, "m"),
        vec![
            (
                "{__name__=\"m\", instance=\"a:1\", job=\"node\", x=\"1\", y=\"2\"}".to_owned(),
                vec![
                    (1000, "1".to_owned()),
                    (2000, "1".to_owned()),
                    (3000, "4".to_owned())
                ]
            ),
            (
                "{__name__=\"m\", instance=\"a:1\", job=\"node\", x=\"2\"}".to_owned(),
                vec![
                    (1000, "3".to_owned()),
                    (2000, "3".to_owned()),
                    (3000, "stale".to_owned())
                ]
            ),
        ]
    );
    assert!(dump(&st, "drop_me").is_empty());
    // A text unseen for a while is forgotten, then works again as new.
    for i in 0..(CACHE_KEEP_SCRAPES + 2) as i64 {
        scrape(&st, &cfg, &mut cache, "other 1\n", 4000 + i * 1000);
    }
    assert!(cache.lookup(text_key("m{x=\"2\"}")).is_none());
    let r = scrape(&st, &cfg, &mut cache, "m{x=\"2\"} 9\n", 60_000);
    assert_eq!(r.series_added, 1);
    assert_eq!(
        dump(&st, "m{x=\"2\"}")[0].1.last(),
        Some(&(60_000, "9".to_owned()))
    );
}

/// An appender that refuses, as the TSDB with a future bound does, samples after
/// `max_valid`; everything else goes to the wrapped one.
struct FutureBounded<'a> {
    inner: Box<dyn Appender + 'a>,
    max_valid: i64,
}

impl Appender for FutureBounded<'_> {
    fn append(
        &mut self,
        series_ref: kiln_storage::SeriesRef,
        labels: &Labels,
        t: i64,
        v: SampleValue,
    ) -> Result<kiln_storage::SeriesRef, StorageError> {
        if t > self.max_valid {
            return Err(StorageError::TooFarInFuture {
                labels: labels.clone(),
                t,
                now: self.max_valid,
                max_future: 0,
            });
        }
        self.inner.append(series_ref, labels, t, v)
    }

    fn commit(&mut self) -> Result<(), StorageError> {
        self.inner.commit()
    }

    fn rollback(&mut self) -> Result<(), StorageError> {
        self.inner.rollback()
    }
}

#[test]
fn refused_samples_are_counted_by_reason() {
    let st = MemStorage::new();
    let cfg = config("");
    let mut cache = ScrapeCache::default();
    let mut scrape_at = |body: &str, t: i64| {
        let mut app = FutureBounded {
            inner: st.appender(),
            max_valid: 10_000,
        };
        store_scrape(
            &mut app,
            &cfg,
            &target(),
            &mut cache,
            Ok((body.as_bytes(), Format::Text004)),
            ScrapeTiming {
                t,
                duration_s: 0.1,
                timeout_s: 10.0,
            },
        )
        .expect("store")
    };
    let r = scrape_at("a 1 5000\nb 1\n", 1000);
    assert_eq!(r.samples_rejected, 0);
    // `a` goes back in time; `c` is far in the future; `b` is fine.
    let r = scrape_at("a 1 4000\nb 2\nc 1 99999999999\nd 1 20000\n", 2000);
    assert_eq!(
        (
            r.samples_rejected,
            r.samples_out_of_order,
            r.samples_out_of_bounds,
            r.samples_duplicate_timestamp
        ),
        (3, 1, 2, 0)
    );
    assert!(r.error.is_none(), "refused samples do not fail the scrape");
    assert_eq!(
        dump(&st, "b")[0].1,
        vec![(1000, "1".into()), (2000, "2".into())]
    );
    assert!(dump(&st, "c").is_empty());
}
