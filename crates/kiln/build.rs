//! Build-time facts about the machine, as cfgs for the integration tests, so that a test
//! which cannot run here is reported as `ignored` with its reason (via
//! `#[cfg_attr(not(cfg), ignore = "...")]`) instead of passing without having run:
//!
//! - `kiln_interop`: `KILN_INTEROP=1` was set for the build. Tests against real peers
//!   (promtool, Prometheus, Alertmanager, node_exporter, vmagent, ...) run, and a
//!   missing peer then fails the test; `scripts/test` installs the peers and sets it.
//! - `kiln_conformance`: `../shared/promql-conformance` (Prometheus's PromQL test
//!   scripts) exists beside the repository.
//! - `kiln_lecture`: `../shared/seed/advanced-prometheus-lecture.md` exists beside the
//!   repository.
//!
//! Invariant: the script reruns when any of these facts can have changed, and not on
//! every build. Cargo treats a watched path that does not exist as always changed (the
//! crate and every test binary would be rebuilt each time), and scans a watched
//! directory recursively by modification time, so each optional path is watched through
//! its nearest existing ancestor no higher than `../shared` (a small, read-mostly tree).
//! When `../shared` itself is missing nothing is watched for it: creating it later needs
//! `touch crates/kiln/build.rs` (docs/testing.md says so).

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(kiln_interop)");
    println!("cargo:rustc-check-cfg=cfg(kiln_conformance)");
    println!("cargo:rustc-check-cfg=cfg(kiln_lecture)");

    println!("cargo:rerun-if-env-changed=KILN_INTEROP");
    if std::env::var("KILN_INTEROP").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=kiln_interop");
    }

    // crates/kiln -> crates -> the repository -> the directory holding it.
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let Some(beside_repo) = manifest_dir.ancestors().nth(3) else {
        return;
    };
    let shared = beside_repo.join("shared");
    optional_path(
        "kiln_conformance",
        &shared.join("promql-conformance"),
        &shared,
    );
    optional_path(
        "kiln_lecture",
        &shared.join("seed").join("advanced-prometheus-lecture.md"),
        &shared,
    );
}

/// Sets `cfg` when `path` exists, and watches it (or, while it is missing, its nearest
/// existing ancestor inside `root`, so that its creation reruns this script).
fn optional_path(cfg: &str, path: &Path, root: &Path) {
    if path.exists() {
        println!("cargo:rustc-cfg={cfg}");
    }
    if let Some(watched) = path
        .ancestors()
        .take_while(|p| p.starts_with(root))
        .find(|p| p.exists())
    {
        println!("cargo:rerun-if-changed={}", watched.display());
    }
}
