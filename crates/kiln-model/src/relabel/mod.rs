//! Relabeling: Prometheus's `<relabel_config>` rules applied to a [`Labels`].
//!
//! Scraping uses it for target relabeling (`relabel_configs`) and metric relabeling
//! (`metric_relabel_configs`); remote write and alerting use it for their own
//! `write_relabel_configs` and `alert_relabel_configs`.
//!
//! Semantics are Prometheus 3's, checked against its documentation:
//! - The values of `source_labels` are joined with `separator`; an absent label counts
//!   as `""`.
//! - Regexes are RE2 syntax, fully anchored, and `.` matches newline: they are compiled by
//!   [`compile_anchored`] as `^(?s:REGEX)$`, with RE2's ASCII-only `\d \w \s \b`.
//! - Templates (`replacement`, and `target_label` for `replace`) expand `$1`, `${1}`,
//!   `$name`, `${name}` and `$$` exactly as Go's `Regexp.Expand` does: a `$name` takes
//!   the longest run of letters, digits and `_` (so `$1x` is the group named `1x`, which
//!   is empty; write `${1}x`), a group that does not exist or did not take part expands to
//!   `""`, and a `$` that starts no valid reference is kept as it is.
//! - Setting a label to `""` deletes it.
//! - Configs apply in order, each to the result of the ones before; `keep`, `drop`,
//!   `keepequal` and `dropequal` stop the chain and drop the label set.
//! - `hashmod` is `md5(joined value)` with bytes 8..16 read as a big-endian `u64`, modulo
//!   `modulus` (what Prometheus computes, and has since its first version). MD5 is
//!   implemented here (RFC 1321), used only for this sharding hash.
//! - `labelmap` visits the labels in Prometheus 3's `labels.Builder` order: the original
//!   labels (name order) that no earlier config of the chain set or deleted, then the
//!   labels set by earlier configs in the order they were first set. When two labels map
//!   to the same new name the one visited last wins. (Prometheus 2 visited the labels in
//!   name order after every config; the two differ only for such collisions.)
//! - `lowercase` and `uppercase` map each character the way Go's `strings.ToLower` and
//!   `strings.ToUpper` do (simple, one-to-one Unicode case mapping: `ß` stays `ß`).
//!
//! Label names are validated with the classic rules (`[a-zA-Z_][a-zA-Z0-9_]*`), as in the
//! rest of Kiln and in Prometheus 2 or Prometheus 3 with
//! `metric_name_validation_scheme: legacy`. Prometheus 3's default UTF-8 scheme would
//! accept more names.
//!
//! Call [`RelabelConfig::validate`] when loading a configuration. Relabeling never panics
//! on a config that fails validation; such a config is applied as far as it makes sense
//! (`hashmod` with modulus 0, or a step whose target is not a valid label name, does
//! nothing). `labelmap` writes whatever name its replacement expands to, as Prometheus
//! does: callers check the result's names as Prometheus does after relabeling.

use std::fmt;
use std::str::FromStr;

use regex::Regex;

use crate::labels::{Labels, LabelsBuilder, is_valid_label_name};
use crate::matcher::compile_anchored;

mod md5;
use md5::md5;

/// The default `separator`.
pub const DEFAULT_SEPARATOR: &str = ";";
/// The default `regex`.
pub const DEFAULT_REGEX: &str = "(.*)";
/// The default `replacement`.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// What a relabel config does. Names parse case-insensitively and display in lower case,
/// as in Prometheus's YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Action {
    /// Sets `target_label` to the expanded `replacement` when `regex` matches.
    #[default]
    Replace,
    /// Drops the label set unless `regex` matches.
    Keep,
    /// Drops the label set when `regex` matches.
    Drop,
    /// Drops the label set unless the joined value equals `target_label`'s value.
    KeepEqual,
    /// Drops the label set when the joined value equals `target_label`'s value.
    DropEqual,
    /// Sets `target_label` to a hash of the joined value modulo `modulus`.
    HashMod,
    /// Copies every label whose name matches `regex` to the expanded `replacement`.
    LabelMap,
    /// Removes every label whose name matches `regex`.
    LabelDrop,
    /// Removes every label whose name does not match `regex`.
    LabelKeep,
    /// Sets `target_label` to the lower-cased joined value.
    Lowercase,
    /// Sets `target_label` to the upper-cased joined value.
    Uppercase,
}

impl Action {
    /// Every action, in the order of Prometheus's documentation.
    pub const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    /// The name used in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = RelabelError;

    /// Parses an action name, ignoring case as Prometheus does.
    fn from_str(s: &str) -> Result<Action, RelabelError> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| RelabelError::UnknownAction {
                action: s.to_owned(),
            })
    }
}

/// Why a relabel config is invalid. Every variant is bad configuration (a user error, never
/// retried); the messages follow Prometheus's.
#[derive(Debug, thiserror::Error)]
pub enum RelabelError {
    #[error("unknown relabel action {action:?}")]
    UnknownAction { action: String },
    #[error("invalid relabel regex {pattern:?}: {source}")]
    InvalidRegex {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
    #[error("{name:?} is not a valid label name")]
    InvalidSourceLabel { name: String },
    #[error("relabel configuration for hashmod requires non-zero modulus")]
    ZeroModulus,
    #[error("relabel configuration for {action} action requires 'target_label' value")]
    MissingTargetLabel { action: Action },
    #[error("{target_label:?} is invalid 'target_label' for {action} action")]
    InvalidTargetLabel {
        target_label: String,
        action: Action,
    },
    #[error("'replacement' can not be set for {action} action")]
    ReplacementNotAllowed { action: Action },
    #[error("{replacement:?} is invalid 'replacement' for {action} action")]
    InvalidReplacement { replacement: String, action: Action },
    #[error(
        "{action} action requires only 'source_labels' and `target_label`, and no other fields"
    )]
    OnlySourceAndTarget { action: Action },
    #[error("{action} action requires only 'regex', and no other fields")]
    OnlyRegex { action: Action },
}

/// A compiled relabel regex. It keeps the pattern as written, for display and
/// serialization; equality compares the patterns.
#[derive(Clone)]
pub struct RelabelRegex {
    pattern: String,
    engine: Engine,
}

#[derive(Clone)]
enum Engine {
    /// `.*`: matches everything; the match is group 0.
    AnyBare,
    /// `(.*)` (the default): matches everything, captured as group 1.
    AnyGroup,
    Re(Regex),
}

impl RelabelRegex {
    /// Compiles `pattern` anchored at both ends, with `.` matching newline.
    pub fn new(pattern: &str) -> Result<RelabelRegex, RelabelError> {
        let re = compile_anchored(pattern).map_err(|e| RelabelError::InvalidRegex {
            pattern: pattern.to_owned(),
            source: Box::new(e),
        })?;
        let engine = match pattern {
            "(.*)" => Engine::AnyGroup,
            ".*" => Engine::AnyBare,
            _ => Engine::Re(re),
        };
        Ok(RelabelRegex {
            pattern: pattern.to_owned(),
            engine,
        })
    }

    /// The pattern as written (without the anchors added when compiling).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `s` matches.
    pub fn is_match(&self, s: &str) -> bool {
        match &self.engine {
            Engine::AnyBare | Engine::AnyGroup => true,
            Engine::Re(re) => re.is_match(s),
        }
    }

    fn captures<'t>(&'t self, s: &'t str) -> Option<Caps<'t>> {
        match &self.engine {
            Engine::AnyGroup => Some(Caps::Whole { text: s, groups: 2 }),
            Engine::AnyBare => Some(Caps::Whole { text: s, groups: 1 }),
            Engine::Re(re) => re.captures(s).map(Caps::Re),
        }
    }
}

impl Default for RelabelRegex {
    /// `(.*)`, Prometheus's default.
    fn default() -> RelabelRegex {
        RelabelRegex {
            pattern: DEFAULT_REGEX.to_owned(),
            engine: Engine::AnyGroup,
        }
    }
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for RelabelRegex {}

impl fmt::Debug for RelabelRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RelabelRegex").field(&self.pattern).finish()
    }
}

impl fmt::Display for RelabelRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// One relabel rule, the fields of Prometheus's `<relabel_config>`. [`Default`] gives
/// Prometheus's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelabelConfig {
    /// Labels whose values are joined and matched; an absent label counts as `""`.
    pub source_labels: Vec<String>,
    /// Put between the joined values. Default `;`.
    pub separator: String,
    /// The label written by `replace`, `hashmod`, `lowercase` and `uppercase`, and
    /// compared by `keepequal` and `dropequal`. May hold `$1` templates for `replace`.
    pub target_label: String,
    /// Matched against the joined value, or against label names for `labelmap`,
    /// `labeldrop` and `labelkeep`. Default `(.*)`.
    pub regex: RelabelRegex,
    /// The divisor for `hashmod`; 0 means unset (invalid for `hashmod`).
    pub modulus: u64,
    /// The template written by `replace` and, as a label name, by `labelmap`. Default `$1`.
    pub replacement: String,
    /// Default `replace`.
    pub action: Action,
}

impl Default for RelabelConfig {
    fn default() -> RelabelConfig {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: DEFAULT_SEPARATOR.to_owned(),
            target_label: String::new(),
            regex: RelabelRegex::default(),
            modulus: 0,
            replacement: DEFAULT_REPLACEMENT.to_owned(),
            action: Action::Replace,
        }
    }
}

impl RelabelConfig {
    /// Checks the config the way Prometheus does when loading it, with the same messages.
    pub fn validate(&self) -> Result<(), RelabelError> {
        use Action::*;
        let action = self.action;
        if let Some(name) = self.source_labels.iter().find(|n| !is_valid_label_name(n)) {
            return Err(RelabelError::InvalidSourceLabel { name: name.clone() });
        }
        if action == HashMod && self.modulus == 0 {
            return Err(RelabelError::ZeroModulus);
        }
        let writes_or_reads_target = matches!(
            action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if writes_or_reads_target && self.target_label.is_empty() {
            return Err(RelabelError::MissingTargetLabel { action });
        }
        let target_ok = match action {
            Replace if self.target_label.contains('$') => {
                is_label_name_template(&self.target_label)
            }
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual => {
                is_valid_label_name(&self.target_label)
            }
            _ => true,
        };
        if !target_ok {
            return Err(RelabelError::InvalidTargetLabel {
                target_label: self.target_label.clone(),
                action,
            });
        }
        if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual)
            && self.replacement != DEFAULT_REPLACEMENT
        {
            return Err(RelabelError::ReplacementNotAllowed { action });
        }
        if action == LabelMap && !is_label_name_template(&self.replacement) {
            return Err(RelabelError::InvalidReplacement {
                replacement: self.replacement.clone(),
                action,
            });
        }
        let other_fields_default = self.modulus == 0
            && self.separator == DEFAULT_SEPARATOR
            && self.replacement == DEFAULT_REPLACEMENT;
        if matches!(action, KeepEqual | DropEqual)
            && !(other_fields_default && self.regex.as_str() == DEFAULT_REGEX)
        {
            return Err(RelabelError::OnlySourceAndTarget { action });
        }
        if matches!(action, LabelDrop | LabelKeep)
            && !(other_fields_default
                && self.source_labels.is_empty()
                && self.target_label.is_empty())
        {
            return Err(RelabelError::OnlyRegex { action });
        }
        Ok(())
    }
}

/// Whether `s` is a label name that may contain `$` references, by Prometheus's rule
/// `^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$` (`\w` being ASCII): a non-empty run of
/// letters, `_`, digits and references, not starting with a digit.
fn is_label_name_template(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'0'..=b'9' if i == 0 => return false,
            c if word(c) => i += 1,
            b'$' => {
                let braced = b.get(i + 1) == Some(&b'{');
                let start = if braced { i + 2 } else { i + 1 };
                let mut end = start;
                while end < b.len() && word(b[end]) {
                    end += 1;
                }
                if end == start {
                    return false;
                }
                if braced {
                    if b.get(end) != Some(&b'}') {
                        return false;
                    }
                    end += 1;
                }
                i = end;
            }
            _ => return false,
        }
    }
    !b.is_empty()
}

/// Applies `configs` in order to `labels`. `None` when a `keep`, `drop`, `keepequal` or
/// `dropequal` step drops the label set.
///
/// Allocation: a few scratch strings reused across steps; when no step changes anything
/// the result shares `labels`'s buffer; otherwise the result is built once at the end.
pub fn relabel(labels: &Labels, configs: &[RelabelConfig]) -> Option<Labels> {
    let mut work = Work::new(labels);
    let mut scratch = Scratch::default();
    for cfg in configs {
        if !apply(cfg, &mut work, &mut scratch) {
            return None;
        }
    }
    Some(work.finish())
}

/// [`relabel`] on the labels held by `builder`, writing the result back into it. Returns
/// `false`, leaving `builder` as it was, when the label set is dropped. Builds the labels
/// once and refills the builder only when they changed.
pub fn relabel_into(builder: &mut LabelsBuilder, configs: &[RelabelConfig]) -> bool {
    let before = builder.build();
    let Some(after) = relabel(&before, configs) else {
        return false;
    };
    if after != before {
        builder.reset();
        for l in after.iter() {
            builder.set(l.name, l.value);
        }
    }
    true
}

/// The label set being relabeled: Prometheus's `labels.Builder` (the original labels plus
/// the names set and deleted since), so lookups and `labelmap`'s visiting order match it.
struct Work<'a> {
    base: &'a Labels,
    /// Set labels, unique names, in the order first set.
    add: Vec<(String, String)>,
    /// Deleted names; a name also in `add` is set.
    del: Vec<String>,
}

impl<'a> Work<'a> {
    fn new(base: &'a Labels) -> Work<'a> {
        Work {
            base,
            add: Vec::new(),
            del: Vec::new(),
        }
    }

    fn get(&self, name: &str) -> &str {
        if let Some((_, v)) = self.add.iter().find(|(n, _)| n == name) {
            return v;
        }
        if self.del.iter().any(|d| d == name) {
            return "";
        }
        self.base.get(name).unwrap_or("")
    }

    fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        match self.add.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => {
                v.clear();
                v.push_str(value);
            }
            None => self.add.push((name.to_owned(), value.to_owned())),
        }
    }

    fn del(&mut self, name: &str) {
        self.add.retain(|(n, _)| n != name);
        if !self.del.iter().any(|d| d == name) {
            self.del.push(name.to_owned());
        }
    }

    /// Whether an original label is still present unchanged.
    fn base_visible(&self, name: &str) -> bool {
        !self.del.iter().any(|d| d == name) && !self.add.iter().any(|(n, _)| n == name)
    }

    /// The current labels in Prometheus's `Builder.Range` order: unchanged original
    /// labels by name, then set labels in the order first set.
    fn visit(&self, mut f: impl FnMut(&str, &str)) {
        for l in self.base.iter() {
            if self.base_visible(l.name) {
                f(l.name, l.value);
            }
        }
        for (n, v) in &self.add {
            f(n, v);
        }
    }

    fn finish(self) -> Labels {
        if self.add.is_empty() {
            // Shares the buffer when nothing was deleted.
            return self.base.retain(|n| !self.del.iter().any(|d| d == n));
        }
        let mut b = LabelsBuilder::new();
        for l in self.base.iter() {
            if self.base_visible(l.name) {
                b.set(l.name, l.value);
            }
        }
        for (n, v) in &self.add {
            b.set(n, v);
        }
        b.build()
    }
}

/// Buffers reused across the configs of one [`relabel`] call.
#[derive(Default)]
struct Scratch {
    value: String,
    target: String,
    out: String,
}

/// Applies one config; `false` when it drops the label set.
fn apply(cfg: &RelabelConfig, work: &mut Work<'_>, s: &mut Scratch) -> bool {
    s.value.clear();
    for (i, name) in cfg.source_labels.iter().enumerate() {
        if i > 0 {
            s.value.push_str(&cfg.separator);
        }
        s.value.push_str(work.get(name));
    }
    let val = s.value.as_str();
    match cfg.action {
        Action::Keep => return cfg.regex.is_match(val),
        Action::Drop => return !cfg.regex.is_match(val),
        Action::KeepEqual => return work.get(&cfg.target_label) == val,
        Action::DropEqual => return work.get(&cfg.target_label) != val,
        Action::Replace => {
            let Some(caps) = cfg.regex.captures(val) else {
                return true;
            };
            s.target.clear();
            expand(&cfg.target_label, &caps, &mut s.target);
            if !is_valid_label_name(&s.target) {
                return true;
            }
            s.out.clear();
            expand(&cfg.replacement, &caps, &mut s.out);
            work.set(&s.target, &s.out);
        }
        Action::HashMod => {
            if cfg.modulus == 0 || !is_valid_label_name(&cfg.target_label) {
                return true;
            }
            let h = md5(val.as_bytes());
            let low = u64::from_be_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
            s.out.clear();
            s.out.push_str(&(low % cfg.modulus).to_string());
            work.set(&cfg.target_label, &s.out);
        }
        Action::Lowercase | Action::Uppercase => {
            if !is_valid_label_name(&cfg.target_label) {
                return true;
            }
            s.out.clear();
            if cfg.action == Action::Lowercase {
                push_go_lower(&mut s.out, val);
            } else {
                push_go_upper(&mut s.out, val);
            }
            work.set(&cfg.target_label, &s.out);
        }
        Action::LabelMap => {
            let mut copies: Vec<(String, String)> = Vec::new();
            work.visit(|name, value| {
                if let Some(caps) = cfg.regex.captures(name) {
                    let mut new_name = String::new();
                    expand(&cfg.replacement, &caps, &mut new_name);
                    copies.push((new_name, value.to_owned()));
                }
            });
            for (n, v) in copies {
                work.set(&n, &v);
            }
        }
        Action::LabelDrop | Action::LabelKeep => {
            let drop_matching = cfg.action == Action::LabelDrop;
            let mut gone: Vec<String> = Vec::new();
            work.visit(|name, _| {
                if cfg.regex.is_match(name) == drop_matching {
                    gone.push(name.to_owned());
                }
            });
            for n in gone {
                work.del(&n);
            }
        }
    }
    true
}

/// The groups of one match.
enum Caps<'t> {
    /// A match-everything regex: group 0 and, when `groups` is 2, group 1 are `text`.
    Whole {
        text: &'t str,
        groups: usize,
    },
    Re(regex::Captures<'t>),
}

enum GroupRef<'a> {
    Number(usize),
    Name(&'a str),
}

impl Caps<'_> {
    fn group(&self, r: &GroupRef<'_>) -> Option<&str> {
        match (self, r) {
            (Caps::Whole { text, groups }, GroupRef::Number(n)) => (n < groups).then_some(*text),
            (Caps::Whole { .. }, GroupRef::Name(_)) => None,
            (Caps::Re(c), GroupRef::Number(n)) => c.get(*n).map(|m| m.as_str()),
            (Caps::Re(c), GroupRef::Name(name)) => c.name(name).map(|m| m.as_str()),
        }
    }
}

/// Appends `template` to `out` with its `$` references replaced, as Go's
/// `Regexp.ExpandString` does.
fn expand(template: &str, caps: &Caps<'_>, out: &mut String) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some((group, after)) = parse_reference(rest) else {
            out.push('$');
            continue;
        };
        rest = after;
        if let Some(v) = caps.group(&group) {
            out.push_str(v);
        }
    }
    out.push_str(rest);
}

/// Parses the reference after a `$`: `name` or `{name}`, a name being letters, digits and
/// `_`. Returns the reference and the text after it; `None` when malformed.
fn parse_reference(s: &str) -> Option<(GroupRef<'_>, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    let mut rest = &body[end..];
    if braced {
        rest = rest.strip_prefix('}')?;
    }
    let group = match group_number(name) {
        Some(n) => GroupRef::Number(n),
        None => GroupRef::Name(name),
    };
    Some((group, rest))
}

/// A group number as Go reads one: ASCII digits, no leading zero, below 10^9.
fn group_number(name: &str) -> Option<usize> {
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    let mut n = 0usize;
    for b in name.bytes() {
        if !b.is_ascii_digit() || n >= 100_000_000 {
            return None;
        }
        n = n * 10 + usize::from(b - b'0');
    }
    Some(n)
}

/// Go's `strings.ToLower`: each character to its simple lower-case mapping.
fn push_go_lower(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
            continue;
        }
        // The one character whose full lower case (`i` + U+0307) is longer than its simple
        // lower case `i`.
        if c == '\u{130}' {
            out.push('i');
            continue;
        }
        let mut m = c.to_lowercase();
        match (m.next(), m.next()) {
            (Some(l), None) => out.push(l),
            _ => out.push(c),
        }
    }
}

/// Go's `strings.ToUpper`: each character to its simple upper-case mapping.
fn push_go_upper(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_uppercase());
            continue;
        }
        // Greek letters with ypogegrammeni: their full upper case is two characters, their
        // simple upper case is the matching prosgegrammeni letter.
        let u = c as u32;
        let simple = match u {
            0x1F80..=0x1F87 | 0x1F90..=0x1F97 | 0x1FA0..=0x1FA7 => char::from_u32(u + 8),
            0x1FB3 | 0x1FC3 | 0x1FF3 => char::from_u32(u + 9),
            _ => None,
        };
        if let Some(up) = simple {
            out.push(up);
            continue;
        }
        // Characters whose only upper case is longer (`ß` -> `SS`) have no simple mapping
        // and stay as they are.
        let mut m = c.to_uppercase();
        match (m.next(), m.next()) {
            (Some(up), None) => out.push(up),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
