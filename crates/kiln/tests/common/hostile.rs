//! The frame of the hostile-input tests (`tests/hostile_*.rs`): a server holding known
//! data, attacked one way at a time; after each attack it must still answer `/-/ready`
//! within a second and still hold its data, and the attack must get its documented
//! answer. A new finding becomes one more case in one of those files.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{KilnServer, backfill, http, start_kiln_server_logged};

/// The canary's time (Unix seconds): 2026-01-01T00:30:00Z, inside its block.
pub(crate) const CANARY_TIME: i64 = 1_767_227_400;

/// A running server over a data directory that held the canary series
/// (`hostile_canary{n="1"}` = 42 every 15 s, 2026-01-01 00:00 to 01:00 UTC) before
/// it started.
pub(crate) struct Target {
    pub(crate) server: KilnServer,
    pub(crate) data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Target {
    pub(crate) fn port(&self) -> u16 {
        self.server.port
    }
}

/// Starts `kiln server` with `args` (a data directory and port 0 are added) over the
/// canary data.
pub(crate) fn target(args: &[&str]) -> Target {
    target_logged(args).0
}

/// [`target`], also handing every line the server logs to the receiver.
pub(crate) fn target_logged(args: &[&str]) -> (Target, std::sync::mpsc::Receiver<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let om = dir.path().join("canary.om");
    let start = CANARY_TIME - 1800;
    let mut text = String::from("# TYPE hostile_canary gauge\n");
    for i in 0..240 {
        text.push_str(&format!(
            "hostile_canary{{n=\"1\"}} 42 {}\n",
            start + i * 15
        ));
    }
    text.push_str("# EOF\n");
    std::fs::write(&om, text).expect("write canary");
    backfill(&om, &data);
    let path = format!("--storage.tsdb.path={}", data.display());
    let mut all = vec![path.as_str(), "--web.listen-address=127.0.0.1:0"];
    all.extend_from_slice(args);
    let (server, log) = start_kiln_server_logged(&all);
    let target = Target {
        server,
        data,
        _dir: dir,
    };
    (target, log)
}

/// The server survived: `/-/ready` answers 200 within a second, and the canary is
/// still there with its value.
pub(crate) fn assert_unharmed(t: &Target, after: &str) {
    let started = Instant::now();
    let ready = http(t.port(), "GET", "/-/ready");
    let took = started.elapsed();
    assert!(
        matches!(ready, Some((200, _))),
        "after {after}: /-/ready answered {ready:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "after {after}: /-/ready took {took:?}"
    );
    let (status, body) = http(
        t.port(),
        "GET",
        &format!("/api/v1/query?query=hostile_canary&time={CANARY_TIME}"),
    )
    .unwrap_or_else(|| panic!("after {after}: the canary query got no answer"));
    assert_eq!(status, 200, "after {after}: {body}");
    assert!(
        body.contains(r#""n":"1"}"#) && body.contains(r#""42"]"#),
        "after {after}: the canary is gone: {body}"
    );
}

/// Sends `request` as it is on a new connection and returns the status and body of the
/// answer (`None` when the server closed the connection without one). Reads for at
/// most `limit`.
pub(crate) fn raw(port: u16, request: &[u8], limit: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.write_all(request).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// `GET path` with the query string percent-encoded from `query`.
pub(crate) fn get_query(port: u16, endpoint: &str, query: &str) -> Option<(u16, String)> {
    let path = format!("{endpoint}?query={}", super::url_encode(query));
    http(port, "GET", &path)
}
