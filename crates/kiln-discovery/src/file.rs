//! `file_sd_configs`: target groups from JSON or YAML files.
//!
//! The files (a path's last segment may hold one `*`) are checked once a second: a new,
//! removed or changed file (by modification time and size) triggers a re-read of all of
//! them, and so does `refresh_interval` passing. Polling rather than inotify is
//! deliberate: it sees files swapped through symlinks (how Kubernetes updates a
//! ConfigMap volume) and files on network mounts, at the cost of a few `stat` calls a
//! second.
//!
//! A file that cannot be read or parsed keeps its previous groups (the error is
//! logged); a file that is gone loses them. Each target gets `__meta_filepath`. A
//! matching path that cannot even be looked at (a symlink loop, a permission problem)
//! gives no targets and is logged once, at warn, until it can be looked at again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use kiln_config::FileSdConfig;
use tracing::warn;

use crate::group::{GroupFormat, TargetGroup, in_file, parse_groups};
use crate::manager::Publisher;

const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The state of the matching files: path -> (modification time, size).
type FileStamps = BTreeMap<PathBuf, (Option<SystemTime>, u64)>;

pub struct FileDiscovery {
    config: FileSdConfig,
}

impl FileDiscovery {
    pub fn new(config: FileSdConfig) -> FileDiscovery {
        FileDiscovery { config }
    }

    pub async fn run(self, publisher: Publisher) {
        let refresh = self.config.refresh_interval.as_std();
        let mut stamps: Option<FileStamps> = None;
        let mut groups: BTreeMap<PathBuf, Vec<TargetGroup>> = BTreeMap::new();
        let mut last_read = Instant::now();
        let mut unreadable = BTreeSet::new();
        loop {
            let patterns = self.config.files.clone();
            let (now_stamps, problems) =
                tokio::task::spawn_blocking(move || stamp_files(&patterns))
                    .await
                    .unwrap_or_default();
            for (path, err) in newly_unreadable(&mut unreadable, problems) {
                warn!(file = %path.display(), err = %err, "file_sd: cannot look at the file; it gives no targets");
            }
            let due = stamps.as_ref() != Some(&now_stamps) || last_read.elapsed() >= refresh;
            if due {
                let paths: Vec<PathBuf> = now_stamps.keys().cloned().collect();
                let read = tokio::task::spawn_blocking(move || {
                    paths
                        .into_iter()
                        .map(|p| {
                            let r = read_file(&p);
                            (p, r)
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                let mut next = BTreeMap::new();
                for (path, result) in read {
                    match result {
                        Ok(g) => {
                            next.insert(path, g);
                        }
                        Err(e) => {
                            warn!(file = %path.display(), err = %e, "file_sd: keeping the file's previous targets");
                            if let Some(old) = groups.remove(&path) {
                                next.insert(path, old);
                            }
                        }
                    }
                }
                groups = next;
                publisher.publish(groups.values().flatten().cloned().collect());
                stamps = Some(now_stamps);
                last_read = Instant::now();
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// The files the patterns match now, with their stamps, and the matching paths that
/// could not be looked at (a symlink loop, say) with why. A path that does not exist is
/// neither: a file that is gone simply gives no targets.
fn stamp_files(patterns: &[String]) -> (FileStamps, Vec<(PathBuf, std::io::Error)>) {
    let mut out = FileStamps::new();
    let mut problems = Vec::new();
    for pattern in patterns {
        for path in expand(pattern) {
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    out.insert(path, (meta.modified().ok(), meta.len()));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push((path, e)),
            }
        }
    }
    (out, problems)
}

/// The `problems` not reported yet: `reported` becomes the paths of `problems`, so a
/// path is reported once while it stays unreadable, and again if it breaks again after
/// being fixed.
fn newly_unreadable(
    reported: &mut BTreeSet<PathBuf>,
    problems: Vec<(PathBuf, std::io::Error)>,
) -> Vec<(PathBuf, std::io::Error)> {
    let now: BTreeSet<PathBuf> = problems.iter().map(|(p, _)| p.clone()).collect();
    let fresh = problems
        .into_iter()
        .filter(|(p, _)| !reported.contains(p))
        .collect();
    *reported = now;
    fresh
}

/// The paths matching `pattern`, whose last segment may hold one `*`.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![path.to_path_buf()];
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_owned();
            let matches = n.len() >= prefix.len() + suffix.len()
                && n.starts_with(prefix)
                && n.ends_with(suffix)
                // Like Go's filepath.Glob, `*` does not match a leading dot.
                && !(prefix.is_empty() && n.starts_with('.'));
            matches.then(|| dir.join(n))
        })
        .collect();
    out.sort();
    out
}

fn read_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read(path).map_err(|e| format!("reading: {e}"))?;
    let display = path.display().to_string();
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("json") => GroupFormat::Json,
        Some(e) if e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml") => {
            GroupFormat::Yaml
        }
        _ => return Err("not a .json, .yml or .yaml file".into()),
    };
    parse_groups(&text, format, &display, ("__meta_filepath", &display))
        .map_err(|e| in_file(&display, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_config::Duration as ConfigDuration;

    fn addresses(groups: &[TargetGroup]) -> Vec<String> {
        let mut a: Vec<String> = groups
            .iter()
            .flat_map(|g| g.targets.iter())
            .map(|t| t.get("__address__").unwrap_or_default().to_owned())
            .collect();
        a.sort();
        a
    }

    #[tokio::test]
    async fn files_are_watched_and_bad_files_keep_their_targets() {
        let dir = tempfile::tempdir().expect("test step");
        let a = dir.path().join("a.json");
        std::fs::write(&a, r#"[{"targets":["a:1"],"labels":{"env":"x"}}]"#).expect("test step");
        std::fs::write(dir.path().join("ignored.txt"), "x").expect("test step");
        let (publisher, published) = Publisher::for_test();
        let d = FileDiscovery::new(FileSdConfig {
            files: vec![dir.path().join("*.json").display().to_string()],
            refresh_interval: ConfigDuration::from_secs(300),
        });
        let task = tokio::spawn(d.run(publisher));
        let wait = |want: Vec<&'static str>| {
            let want: Vec<String> = want.into_iter().map(String::from).collect();
            let published = &published;
            async move { published.next_where(|g| addresses(g) == want).await }
        };
        let groups = wait(vec!["a:1"]).await;
        assert_eq!(groups[0].labels.get("env"), Some("x"));
        assert_eq!(
            groups[0].labels.get("__meta_filepath"),
            Some(a.display().to_string().as_str())
        );
        // A new file joins.
        std::fs::write(dir.path().join("b.json"), r#"[{"targets":["b:1","b:2"]}]"#)
            .expect("test step");
        wait(vec!["a:1", "b:1", "b:2"]).await;
        // A broken file keeps its targets; a fixed one changes them.
        std::fs::write(&a, "[{").expect("test step");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        wait(vec!["a:1", "b:1", "b:2"]).await;
        std::fs::write(&a, r#"[{"targets":["a:9"]}]"#).expect("test step");
        wait(vec!["a:9", "b:1", "b:2"]).await;
        // A removed file loses them.
        std::fs::remove_file(dir.path().join("b.json")).expect("test step");
        wait(vec!["a:9"]).await;
        task.abort();
    }

    #[test]
    fn a_symlink_loop_is_reported_once_while_it_lasts() {
        let dir = tempfile::tempdir().expect("test step");
        std::fs::write(dir.path().join("good.json"), "[]").expect("test step");
        let looped = dir.path().join("loop.json");
        std::os::unix::fs::symlink(&looped, &looped).expect("test step");
        let patterns = vec![dir.path().join("*.json").display().to_string()];
        let mut reported = BTreeSet::new();
        let check = |reported: &mut BTreeSet<PathBuf>, want: &[&PathBuf]| {
            let (stamps, problems) = stamp_files(&patterns);
            assert_eq!(
                stamps.keys().collect::<Vec<_>>(),
                [&dir.path().join("good.json")]
            );
            let fresh: Vec<PathBuf> = newly_unreadable(reported, problems)
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            assert_eq!(fresh.iter().collect::<Vec<_>>(), want);
        };
        check(&mut reported, &[&looped]);
        check(&mut reported, &[]);
        check(&mut reported, &[]);
        // Fixed, then broken again: reported again.
        std::fs::remove_file(&looped).expect("test step");
        check(&mut reported, &[]);
        std::os::unix::fs::symlink(&looped, &looped).expect("test step");
        check(&mut reported, &[&looped]);
    }

    #[test]
    fn glob_matches_the_last_segment_only() {
        let dir = tempfile::tempdir().expect("test step");
        for n in ["x.json", "xy.json", ".hidden.json", "x.yml"] {
            std::fs::write(dir.path().join(n), "[]").expect("test step");
        }
        let names = |p: &str| -> Vec<String> {
            expand(&dir.path().join(p).display().to_string())
                .iter()
                .map(|p| {
                    p.file_name()
                        .expect("test step")
                        .to_str()
                        .expect("test step")
                        .to_owned()
                })
                .collect()
        };
        assert_eq!(names("*.json"), ["x.json", "xy.json"]);
        assert_eq!(names("x*.json"), ["x.json", "xy.json"]);
        assert_eq!(names("*y.json"), ["xy.json"]);
        assert_eq!(names("x.yml"), ["x.yml"]);
    }
}
