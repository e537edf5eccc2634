use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_model::{Labels, is_stale_nan};
use kiln_promql::{Engine, EngineOptions};
use kiln_storage::mem::MemStorage;
use kiln_storage::{Appendable, Queryable, SampleValue, ValueKind};

use super::*;
use crate::alerting::AlertState;
use crate::file::parse_rule_file;

const MIN: i64 = 60_000;

struct Fixture {
    storage: Arc<MemStorage>,
    queryable: Arc<dyn Queryable>,
    engine: Engine,
    external: BTreeMap<String, String>,
}

impl Fixture {
    fn new() -> Fixture {
        let storage = Arc::new(MemStorage::new());
        Fixture {
            queryable: storage.clone(),
            storage,
            engine: Engine::new(EngineOptions::default()),
            external: BTreeMap::new(),
        }
    }

    fn env(&self) -> EvalEnv<'_> {
        EvalEnv {
            engine: &self.engine,
            queryable: &self.queryable,
            appendable: self.storage.as_ref(),
            external_labels: &self.external,
            external_url: "",
        }
    }

    fn add(&self, series: &[(&str, &str)], t: i64, v: f64) {
        let mut app = self.storage.appender();
        app.append(0, &Labels::from_pairs(series), t, SampleValue::Float(v))
            .expect("append");
        app.commit().expect("commit");
    }

    /// Every sample of the series with exactly these labels.
    fn samples(&self, series: &[(&str, &str)]) -> Vec<(i64, f64)> {
        let want = Labels::from_pairs(series);
        let q = self
            .queryable
            .querier(i64::MIN / 2, i64::MAX / 2)
            .expect("querier");
        let matchers: Vec<kiln_model::Matcher> = want
            .iter()
            .map(|l| kiln_model::Matcher::equal(l.name, l.value))
            .collect();
        let mut set = q.select(true, None, &matchers);
        let mut out = Vec::new();
        while let Some(s) = set.next() {
            if *s.labels() != want {
                continue;
            }
            let mut it = s.iterator();
            while it.next() == ValueKind::Float {
                out.push(it.at());
            }
        }
        out
    }
}

fn group(text: &str) -> Group {
    let specs = parse_rule_file(text, "t.yml").expect("rules parse");
    Group::new(&specs[0], MIN, 0)
}

fn alerting(g: &Group, i: usize) -> &crate::AlertingRule {
    match &g.rules[i] {
        Rule::Alerting(a) => a,
        Rule::Recording(_) => panic!("rule {i} is not an alerting rule"),
    }
}

#[test]
fn recorded_series_go_stale_when_they_disappear() {
    let f = Fixture::new();
    let mut g = group(
        "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: x\n        labels: {team: ml}\n",
    );
    f.add(&[("__name__", "x"), ("i", "a")], 0, 1.0);
    f.add(&[("__name__", "x"), ("i", "b")], 0, 2.0);
    let report = g.eval(&f.env(), 0, &RestoreOptions::default());
    assert_eq!(
        report,
        EvalReport {
            rules_evaluated: 1,
            rules_failed: 0,
            samples_written: 2
        }
    );
    assert_eq!(g.status[0].health, Health::Ok);
    // Series b stops; a goes on.
    f.add(
        &[("__name__", "x"), ("i", "b")],
        MIN / 2,
        kiln_model::STALE_NAN,
    );
    f.add(&[("__name__", "x"), ("i", "a")], MIN, 3.0);
    g.eval(&f.env(), MIN, &RestoreOptions::default());
    let a = f.samples(&[("__name__", "r"), ("i", "a"), ("team", "ml")]);
    assert_eq!(a, vec![(0, 1.0), (MIN, 3.0)]);
    let b = f.samples(&[("__name__", "r"), ("i", "b"), ("team", "ml")]);
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(b[0], (0, 2.0));
    assert!(
        b[1].0 == MIN && is_stale_nan(b[1].1),
        "stale marker at the next evaluation: {b:?}"
    );
}

#[test]
fn errors_mark_the_rule_unhealthy_and_write_nothing() {
    let f = Fixture::new();
    f.add(&[("__name__", "x"), ("i", "a"), ("j", "1")], 0, 1.0);
    f.add(&[("__name__", "x"), ("i", "a"), ("j", "2")], 0, 2.0);
    f.add(&[("__name__", "x"), ("i", "b"), ("j", "1")], 0, 2.0);
    let mut g = group(concat!(
        "groups:\n  - name: g\n    limit: 2\n    rules:\n",
        "      - record: dup\n        expr: x\n        labels: {j: same}\n",
        "      - record: over_limit\n        expr: x\n",
        "      - record: fine\n        expr: sum by (i) (x)\n",
        "      - record: scalar\n        expr: scalar(sum(x)) * 2\n",
        "      - record: str\n        expr: '\"text\"'\n",
    ));
    let report = g.eval(&f.env(), 0, &RestoreOptions::default());
    assert_eq!((report.rules_evaluated, report.rules_failed), (5, 3));
    let err = |i: usize| g.status[i].last_error.clone().unwrap_or_default();
    assert!(
        err(0).contains("same labelset after applying rule labels"),
        "{}",
        err(0)
    );
    assert!(
        err(1).contains("exceeded limit of 2 with 3 series"),
        "{}",
        err(1)
    );
    assert_eq!(g.status[2].health, Health::Ok);
    assert!(err(4).contains("not a vector or scalar"), "{}", err(4));
    assert!(
        f.samples(&[("__name__", "over_limit"), ("i", "a"), ("j", "1")])
            .is_empty()
    );
    assert_eq!(
        f.samples(&[("__name__", "fine"), ("i", "a")]),
        vec![(0, 3.0)]
    );
    assert_eq!(f.samples(&[("__name__", "scalar")]), vec![(0, 10.0)]);
}

#[test]
fn alerts_go_pending_firing_and_resolved() {
    let f = Fixture::new();
    let mut g = group(concat!(
        "groups:\n  - name: g\n    rules:\n",
        "      - alert: Down\n        expr: up == 0\n        for: 2m\n",
        "        labels: {severity: page}\n",
        "        annotations: {summary: '{{ $labels.job }} down, value {{ $value }}'}\n",
    ));
    let up = [("__name__", "up"), ("job", "api")];
    for (i, v) in [0.0, 0.0, 0.0, 1.0].iter().enumerate() {
        f.add(&up, i as i64 * MIN, *v);
    }
    let opts = RestoreOptions::default();
    g.eval(&f.env(), 0, &opts);
    let a = alerting(&g, 0);
    let alert = a.alerts()[0].clone();
    assert_eq!(alert.state, AlertState::Pending);
    assert_eq!(alert.annotations["summary"], "api down, value 0");
    assert_eq!(
        alert.labels,
        Labels::from_pairs(&[("alertname", "Down"), ("job", "api"), ("severity", "page")])
    );
    g.eval(&f.env(), MIN, &opts);
    assert_eq!(alerting(&g, 0).alerts()[0].state, AlertState::Pending);
    g.eval(&f.env(), 2 * MIN, &opts);
    let fired = alerting(&g, 0).alerts()[0].clone();
    assert_eq!(
        (fired.state, fired.fired_at),
        (AlertState::Firing, Some(2 * MIN))
    );
    g.eval(&f.env(), 3 * MIN, &opts);
    let resolved = alerting(&g, 0).alerts()[0].clone();
    assert_eq!(
        (resolved.state, resolved.resolved_at),
        (AlertState::Inactive, Some(3 * MIN))
    );
    // ALERTS: pending at 0 and 1m, firing at 2m, stale at 3m.
    let base = [
        ("alertname", "Down"),
        ("job", "api"),
        ("severity", "page"),
        ("__name__", "ALERTS"),
    ];
    let pending: Vec<_> = base
        .iter()
        .copied()
        .chain([("alertstate", "pending")])
        .collect();
    let firing: Vec<_> = base
        .iter()
        .copied()
        .chain([("alertstate", "firing")])
        .collect();
    let p = f.samples(&pending);
    assert_eq!(&p[..2], &[(0, 1.0), (MIN, 1.0)]);
    assert!(p[2].0 == 2 * MIN && is_stale_nan(p[2].1), "{p:?}");
    let fs = f.samples(&firing);
    assert_eq!(fs[0], (2 * MIN, 1.0));
    assert!(fs[1].0 == 3 * MIN && is_stale_nan(fs[1].1), "{fs:?}");
    // ALERTS_FOR_STATE holds active_at in seconds.
    let for_state = f.samples(&[
        ("__name__", "ALERTS_FOR_STATE"),
        ("alertname", "Down"),
        ("job", "api"),
        ("severity", "page"),
    ]);
    assert_eq!(&for_state[..3], &[(0, 0.0), (MIN, 0.0), (2 * MIN, 0.0)]);
    // Resolved alerts are kept for 15 minutes, then forgotten.
    g.eval(
        &f.env(),
        3 * MIN + crate::alerting::RESOLVED_RETENTION_MS + 1,
        &opts,
    );
    assert!(alerting(&g, 0).alerts().is_empty());
}

#[test]
fn keep_firing_for_holds_a_cleared_alert() {
    let f = Fixture::new();
    let mut g = group(concat!(
        "groups:\n  - name: g\n    rules:\n",
        "      - alert: Down\n        expr: up == 0\n        keep_firing_for: 2m\n",
    ));
    let up = [("__name__", "up"), ("job", "api")];
    for (i, v) in [0.0, 1.0, 1.0, 1.0].iter().enumerate() {
        f.add(&up, i as i64 * MIN, *v);
    }
    let opts = RestoreOptions::default();
    let state = |g: &Group| {
        alerting(g, 0)
            .alerts()
            .first()
            .map(|a| (a.state, a.keep_firing_since))
    };
    g.eval(&f.env(), 0, &opts);
    assert_eq!(
        state(&g),
        Some((AlertState::Firing, None)),
        "no `for`: fires at once"
    );
    g.eval(&f.env(), MIN, &opts);
    assert_eq!(state(&g), Some((AlertState::Firing, Some(MIN))));
    g.eval(&f.env(), 2 * MIN, &opts);
    assert_eq!(state(&g), Some((AlertState::Firing, Some(MIN))));
    g.eval(&f.env(), 3 * MIN, &opts);
    assert_eq!(state(&g).map(|s| s.0), Some(AlertState::Inactive));
}

#[test]
fn alert_limit_clears_every_alert() {
    let f = Fixture::new();
    let mut g = group(
        "groups:\n  - name: g\n    limit: 1\n    rules:\n      - alert: Down\n        expr: up == 0\n",
    );
    f.add(&[("__name__", "up"), ("job", "a")], 0, 0.0);
    f.add(&[("__name__", "up"), ("job", "b")], 0, 0.0);
    let report = g.eval(&f.env(), 0, &RestoreOptions::default());
    assert_eq!(report.rules_failed, 1);
    assert!(alerting(&g, 0).alerts().is_empty());
    let e = g.status[0].last_error.clone().unwrap_or_default();
    assert!(e.contains("exceeded limit of 1 with 2 alerts"), "{e}");
}

#[test]
fn for_state_is_restored_after_a_restart() {
    let f = Fixture::new();
    let rules = concat!(
        "groups:\n  - name: g\n    rules:\n",
        "      - alert: Slow\n        expr: up == 0\n        for: 30m\n",
        "      - alert: Soon\n        expr: up == 0\n        for: 12m\n",
    );
    let up = [("__name__", "up"), ("job", "api")];
    for i in 0..=40 {
        f.add(&up, i * MIN, 0.0);
    }
    // A first run evaluates for 10 minutes, then stops (the server goes down).
    let opts = RestoreOptions {
        outage_tolerance_ms: 60 * MIN,
        grace_ms: 10 * MIN,
    };
    let mut before = group(rules);
    for i in 0..=10 {
        before.eval(&f.env(), i * MIN, &opts);
    }
    // Back after 5 minutes' downtime.
    let mut after = group(rules);
    after.require_restore();
    after.eval(&f.env(), 15 * MIN, &opts);
    // Slow: 10 of its 30 minutes spent; the downtime does not count: active_at moves
    // from 0 to 5m.
    let slow = alerting(&after, 0).alerts()[0].clone();
    assert_eq!((slow.active_at, slow.state), (5 * MIN, AlertState::Pending));
    // Soon: 2 minutes were left, less than the 10-minute grace period: it fires no
    // earlier than 10 minutes after the restart.
    let soon = alerting(&after, 1).alerts()[0].clone();
    assert_eq!(soon.active_at, 15 * MIN + 10 * MIN - 12 * MIN);
    assert_eq!(soon.state, AlertState::Pending);
    after.eval(&f.env(), 25 * MIN, &opts);
    assert_eq!(alerting(&after, 1).alerts()[0].state, AlertState::Firing);
    assert_eq!(alerting(&after, 0).alerts()[0].state, AlertState::Pending);
    after.eval(&f.env(), 35 * MIN, &opts);
    assert_eq!(alerting(&after, 0).alerts()[0].state, AlertState::Firing);
}

#[test]
fn reload_keeps_alerts_of_unchanged_rules_and_stales_removed_ones() {
    let f = Fixture::new();
    f.add(&[("__name__", "up"), ("job", "a")], 0, 0.0);
    let opts = RestoreOptions::default();
    let mut old = group(concat!(
        "groups:\n  - name: g\n    rules:\n",
        "      - alert: Down\n        expr: up == 0\n        for: 5m\n",
        "      - record: gone\n        expr: up\n",
    ));
    old.eval(&f.env(), 0, &opts);
    let mut new = group(
        "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 10m\n",
    );
    assert!(!new.same_definition(&old));
    new.adopt_state(&mut old);
    assert_eq!(
        alerting(&new, 0).alerts()[0].active_at,
        0,
        "alert kept across the reload"
    );
    new.eval(&f.env(), MIN, &opts);
    let gone = f.samples(&[("__name__", "gone"), ("job", "a")]);
    assert!(gone.len() == 2 && is_stale_nan(gone[1].1), "{gone:?}");
}

#[test]
fn later_rules_see_earlier_results_of_the_same_evaluation() {
    let f = Fixture::new();
    f.add(&[("__name__", "x"), ("i", "a")], 0, 2.0);
    f.add(&[("__name__", "x"), ("i", "b")], 0, 3.0);
    let mut g = group(concat!(
        "groups:\n  - name: g\n    rules:\n",
        "      - record: step1\n        expr: sum(x)\n",
        "      - record: step2\n        expr: step1 * 10\n",
        "      - alert: Big\n        expr: step2 > 40\n",
    ));
    g.eval(&f.env(), 0, &RestoreOptions::default());
    assert_eq!(f.samples(&[("__name__", "step2")]), vec![(0, 50.0)]);
    assert_eq!(
        alerting(&g, 2).alerts().len(),
        1,
        "the alert saw step2 at once"
    );
}
