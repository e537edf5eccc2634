//! The hostile-input frame itself: a server over the canary data is unharmed, and a
//! raw request gets its answer.

mod common;

use std::time::Duration;

use common::hostile::{assert_unharmed, raw, target};

#[test]
fn a_fresh_target_is_unharmed_and_answers_raw_requests() {
    let t = target(&[]);
    assert_unharmed(&t, "nothing");
    let answer = raw(
        t.port(),
        b"GET /-/healthy HTTP/1.0\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(answer.map(|(s, _)| s), Some(200));
}
