//! The limits every YAML document Kiln reads is held to ([`LIMITS`]), and what a
//! document over one of them is told: which limit, in the user's terms, and what to do.
//! A file written to exhaust memory or the stack (a "billion laughs" alias bomb,
//! thousands of nested brackets, millions of values, a file of gigabytes) is refused
//! quickly, before it is expanded or read whole.
//!
//! Aliases count as the nodes they stand for while they are expanded, so an alias bomb
//! hits the node limit; the error then comes from inside an alias, and the message says
//! it is the aliases that expand too far, not the file that is too large.

use serde_saphyr::budget::BudgetBreach;

/// The limits of one YAML document. The values are serde-saphyr's defaults, written out
/// so that the messages can name them and a new library version cannot change them
/// unnoticed; they are far above what a real configuration, rule or target file holds
/// (a scrape job takes some tens of nodes, a target of a file_sd file a few).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YamlLimits {
    /// Values, lists and mappings in one document.
    pub max_nodes: usize,
    /// Parser events: each value, each start and end of a list or mapping.
    pub max_events: usize,
    /// Lists and mappings nested in one another.
    pub max_depth: usize,
    /// Bytes of text in all values together.
    pub max_value_bytes: usize,
    /// Aliases (`*name`) in one document.
    pub max_aliases: usize,
    /// Anchors (`&name`) in one document.
    pub max_anchors: usize,
    /// Events that aliases expand to, all together: what bounds an alias bomb.
    pub max_alias_expansion: usize,
    /// Aliases expanded inside the expansion of another alias.
    pub max_alias_nesting: usize,
    /// Merge keys (`<<:`) in one document.
    pub max_merge_keys: usize,
    /// Size of a YAML file Kiln reads from disk ([`read_file`]).
    pub max_file_bytes: u64,
}

/// The limits every YAML document Kiln reads is held to. See [`YamlLimits`].
pub const LIMITS: YamlLimits = YamlLimits {
    max_nodes: 250_000,
    max_events: 1_000_000,
    max_depth: 64,
    max_value_bytes: 64 << 20,
    max_aliases: 50_000,
    max_anchors: 50_000,
    max_alias_expansion: 1_000_000,
    max_alias_nesting: 64,
    max_merge_keys: 10_000,
    max_file_bytes: 64 << 20,
};

/// The parser's options for [`LIMITS`]. The library's alias-to-anchor ratio heuristic
/// is off: it refuses a file that uses one anchor in 100 places or more (150 jobs each
/// merging `<<: *defaults`), which prometheus.yml files do, while what stops an alias
/// bomb is the node limit, which counts what aliases expand to (and
/// `max_alias_expansion` behind it).
pub(super) fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = LIMITS.max_nodes;
    budget.max_events = LIMITS.max_events;
    budget.max_depth = LIMITS.max_depth;
    // Brackets are nested in the scanner, which looks ahead of the events the budget
    // counts: it must stop at the same depth, for the same message.
    budget.flow_nesting_limit = LIMITS.max_depth;
    budget.max_total_scalar_bytes = LIMITS.max_value_bytes;
    budget.max_aliases = LIMITS.max_aliases;
    budget.max_anchors = LIMITS.max_anchors;
    budget.max_merge_keys = LIMITS.max_merge_keys;
    budget.enforce_alias_anchor_ratio = false;
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = LIMITS.max_alias_expansion;
    alias_limits.max_replay_stack_depth = LIMITS.max_alias_nesting;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits = alias_limits;
    options
}

/// Reads a YAML file, refusing one larger than [`YamlLimits::max_file_bytes`] before
/// reading it into memory (a file that grows while it is read is cut at the limit and
/// refused too). The refusal is an error of kind [`std::io::ErrorKind::FileTooLarge`]
/// whose text says the limit and what to do, so callers report it as any read error.
pub fn read_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let limit = LIMITS.max_file_bytes;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "the file is larger than {}, the most Kiln reads as one YAML document; split \
                 it into several smaller files",
                bytes(limit)
            ),
        ));
    }
    Ok(text)
}

/// What a YAML bomb is told: `expanded` is what its aliases grew to.
pub(super) fn alias_bomb(expanded: &str) -> String {
    format!(
        "aliases (`*name`) expand to {expanded}, the most Kiln reads from one file; this is \
         what a YAML bomb (\"billion laughs\") looks like. Write the repeated parts out, or \
         reuse anchors less"
    )
}

/// A document over one of [`LIMITS`], said in the user's terms with what to do.
/// `via_alias`: the limit was hit while an alias was being expanded, so the text itself
/// may be small and it is the aliases that are too many.
pub(super) fn over_budget(breach: &BudgetBreach, via_alias: bool) -> String {
    use BudgetBreach as B;
    let split = "split it into several smaller files";
    let too_large = match breach {
        B::Nodes { .. } => Some(format!(
            "more than {} YAML nodes (values, lists and mappings)",
            count(LIMITS.max_nodes)
        )),
        B::Events { .. } => Some(format!(
            "more than {} YAML events (values, and starts and ends of lists and mappings)",
            count(LIMITS.max_events)
        )),
        B::ScalarBytes { .. } => Some(format!(
            "more than {} of text in values",
            bytes(LIMITS.max_value_bytes as u64)
        )),
        _ => None,
    };
    if let Some(what) = too_large {
        return if via_alias {
            alias_bomb(&what)
        } else {
            format!(
                "the document is too large: it holds {what}, the most Kiln reads from one \
                 file; {split}"
            )
        };
    }
    match breach {
        B::InputBytes { input_bytes } => format!(
            "the document is too large: more than {} bytes; {split}",
            count(*input_bytes)
        ),
        B::Depth { .. } => too_deep(),
        B::Aliases { .. } => format!(
            "the document holds more than {} aliases (`*name`), the most Kiln expands in one \
             file; write the repeated parts out, or {split}",
            count(LIMITS.max_aliases)
        ),
        B::Anchors { .. } => format!(
            "the document defines more than {} anchors (`&name`), the most Kiln keeps in one \
             file; {split}",
            count(LIMITS.max_anchors)
        ),
        B::AliasAnchorRatio { aliases, anchors } => format!(
            "the document holds {} aliases (`*name`) for only {} anchors (`&name`), which is \
             what a YAML bomb (\"billion laughs\") looks like; write the repeated parts out",
            count(*aliases),
            count(*anchors)
        ),
        B::MergeKeys { .. } => format!(
            "the document holds more than {} merge keys (`<<:`), the most Kiln expands in one \
             file; {split}",
            count(LIMITS.max_merge_keys)
        ),
        B::RecordedAnchorEvents { .. } | B::RecordedAnchorBytes { .. } => {
            "the lists and mappings under anchors (`&name`) are too large for Kiln to keep for \
             their aliases; anchor smaller parts, or write the repeated parts out"
                .to_owned()
        }
        B::Documents { .. } => {
            "the file holds too many YAML documents (separated by `---`); only one is allowed"
                .to_owned()
        }
        B::SequenceUnbalanced => {
            "the YAML is malformed: a list or mapping ends that never started".to_owned()
        }
        other => format!("the document exceeds a limit of Kiln's YAML reader ({other:?})"),
    }
}

/// Lists and mappings nested past [`YamlLimits::max_depth`], in brackets or by
/// indentation.
pub(super) fn too_deep() -> String {
    format!(
        "lists and mappings are nested more than {} levels deep here, the most Kiln reads \
         (no configuration needs as many; look for unclosed `[` or `{{`)",
        count(LIMITS.max_depth)
    )
}

/// `n` with thousands separated by commas, as the limits are written in the docs.
pub(super) fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A byte size in the largest binary unit that divides it (`64 MiB`).
fn bytes(n: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB"];
    let (mut n, mut unit) = (n, 0);
    while n != 0 && n % 1024 == 0 && unit + 1 < units.len() {
        n /= 1024;
        unit += 1;
    }
    format!("{n} {}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::from_str;
    /// A `Doc` with one section that takes anything, as prometheus.yml's `storage:`.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Open {
        #[serde(default)]
        any: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        files: Vec<String>,
    }

    /// The message for `text` read as an [`Open`] document, without its position.
    fn message(text: &str) -> String {
        match from_str::<Open>(text, "a test document is a mapping") {
            Ok(d) => format!("parsed: {d:?}"),
            Err(e) => e.message,
        }
    }

    /// A billion-laughs document: `levels` anchors, each a list of ten aliases of the one
    /// before.
    fn alias_bomb(levels: usize) -> String {
        let mut text = String::from("any:\n  l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..=levels {
            let prev = format!("*l{}", i - 1);
            text.push_str(&format!("  l{i}: &l{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        text
    }

    #[test]
    fn documents_over_the_limits_say_which_limit_and_what_to_do() {
        let many = format!("files: [{}]\n", vec!["a"; LIMITS.max_nodes].join(", "));
        assert_eq!(
            message(&many),
            "the document is too large: it holds more than 250,000 YAML nodes (values, lists \
             and mappings), the most Kiln reads from one file; split it into several smaller \
             files"
        );
        let deep = format!("any: {}{}\n", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            message(&deep),
            "lists and mappings are nested more than 64 levels deep here, the most Kiln reads \
             (no configuration needs as many; look for unclosed `[` or `{`)"
        );
        // Expanded aliases count as the nodes they stand for: a bomb is told so, at
        // an alias.
        let bomb = from_str::<Open>(&alias_bomb(9), "").expect_err("a bomb");
        assert_eq!(
            bomb.message,
            "aliases (`*name`) expand to more than 250,000 YAML nodes (values, lists and \
             mappings), the most Kiln reads from one file; this is what a YAML bomb (\"billion \
             laughs\") looks like. Write the repeated parts out, or reuse anchors less"
        );
        let line = alias_bomb(9)
            .lines()
            .nth(bomb.position.line - 1)
            .unwrap_or("")
            .to_owned();
        assert!(
            line.chars().nth(bomb.position.column - 1) == Some('*'),
            "{bomb}: {line}"
        );
        // Three levels expand to some 1,100 lists of ten: read.
        assert!(
            message(&alias_bomb(3)).starts_with("parsed"),
            "{}",
            message(&alias_bomb(3))
        );
        let mut anchors = String::from("any:\n");
        for i in 0..=LIMITS.max_anchors {
            anchors.push_str(&format!("  k{i}: &a{i} x\n"));
        }
        assert_eq!(
            message(&anchors),
            "the document defines more than 50,000 anchors (`&name`), the most Kiln keeps in \
             one file; split it into several smaller files"
        );
    }

    /// One anchor reused in many places, as prometheus.yml files do with `<<: *defaults`,
    /// is no bomb (the library's alias-to-anchor ratio heuristic would refuse it).
    #[test]
    fn an_anchor_reused_many_times_is_read() {
        let mut text =
            String::from("any:\n  defaults: &d {interval: 15s, timeout: 10s}\n  jobs:\n");
        for i in 0..500 {
            text.push_str(&format!("    - {{<<: *d, name: job{i}}}\n"));
        }
        assert!(message(&text).starts_with("parsed"), "{}", message(&text));
    }

    #[test]
    fn numbers_and_sizes_are_written_for_people() {
        assert_eq!(count(250_000), "250,000");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(64), "64");
        assert_eq!(count(0), "0");
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(1000), "1000 bytes");
    }

    #[test]
    fn files_over_the_size_limit_are_refused_before_they_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.yml");
        let f = std::fs::File::create(&big).expect("create");
        // Sparse: no disk, and NUL bytes are text as far as reading goes.
        f.set_len(LIMITS.max_file_bytes + 1).expect("set_len");
        let err = read_file(&big).expect_err("too large");
        assert_eq!(
            err.to_string(),
            "the file is larger than 64 MiB, the most Kiln reads as one YAML document; split \
             it into several smaller files"
        );
        let small = dir.path().join("small.yml");
        std::fs::write(&small, "files: [a]\n").expect("write");
        assert_eq!(read_file(&small).expect("read"), "files: [a]\n");
    }
}
