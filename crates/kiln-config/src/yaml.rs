//! YAML documents read with errors in the user's terms: every file Kiln reads as YAML
//! (`prometheus.yml`, rule files, rule unit tests, `file_sd` files, kubeconfigs) goes
//! through [`from_str`], so they all report problems the same way:
//! `<line>:<column>: <what is wrong>`, the caller putting the file's path in front.
//!
//! The YAML library's own messages are written for the developers using it: they name
//! Rust types (`invalid u64`), parser states (`expected mapping start`) and its options
//! (`set DuplicateKeyPolicy in Options`). Here each kind of error is reworded from
//! what the library knows (the expected kind of node, the key, the variants) and from
//! the text at the error's position (which key holds the bad value, what was written
//! there): `rule_files must be a list, not "rules.yml"`. The library's error is not
//! kept as a `#[source]`, on purpose: a log that prints the chain would show its
//! developer text again.
//!
//! [`Position`] and `Problem` carry the place of a value that parsed but breaks a
//! rule of the schema (found with [`serde_saphyr::Spanned`]), so those errors point at
//! the file too.
//!
//! Every document is read within [`LIMITS`] (see the `limits` module), so a file
//! written to exhaust memory or the stack is refused quickly, with a message naming the
//! limit it hit in the user's terms (`more than 250,000 YAML nodes`) and what to do.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_saphyr::{Error, Location};

mod limits;

pub use limits::{LIMITS, YamlLimits, read_file};
use limits::{alias_bomb, count, over_budget, too_deep};

/// A place in a YAML file: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of a parsed node; `None` for a node the library could not place
    /// (line 0).
    pub fn of(location: &Location) -> Option<Position> {
        let line = usize::try_from(location.line()).ok()?;
        let column = usize::try_from(location.column()).ok()?;
        (line > 0).then_some(Position {
            line,
            column: column.max(1),
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What went wrong, for callers that add advice of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlErrorKind {
    /// A mapping key the schema does not have (the key as written).
    UnknownField(String),
    /// Anything else.
    Other,
}

/// A YAML document that did not parse or did not fit its schema. Displays as
/// `<line>:<column>: <message>`; the caller prefixes the file's path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {message}")]
pub struct YamlError {
    /// Where the problem is; `1:1` when the library gave no place.
    pub position: Position,
    /// What is wrong, in the user's terms.
    pub message: String,
    pub kind: YamlErrorKind,
}

/// A value that parsed but breaks a rule of the schema: the message and, once known,
/// the place of the value. Validation code builds these from the inside out: the
/// innermost code that knows a place sets it ([`Problem::or_at`] keeps the first one),
/// enclosing code adds where in the document it is ([`Problem::within`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) position: Option<Position>,
    pub(crate) message: String,
}

impl Problem {
    /// A problem whose place is not known yet.
    pub(crate) fn new(message: impl Into<String>) -> Problem {
        Problem {
            position: None,
            message: message.into(),
        }
    }

    /// A problem with the value at `location`.
    pub(crate) fn at(location: &Location, message: impl Into<String>) -> Problem {
        Problem::new(message).or_at(location)
    }

    /// Places the problem at `location` unless it already has a (more precise) place.
    #[must_use]
    pub(crate) fn or_at(mut self, location: &Location) -> Problem {
        if self.position.is_none() {
            self.position = Position::of(location);
        }
        self
    }

    /// Prefixes the message with where in the document the value is
    /// (`scrape_configs[2] (job "node")`).
    #[must_use]
    pub(crate) fn within(mut self, context: impl fmt::Display) -> Problem {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl From<String> for Problem {
    fn from(message: String) -> Problem {
        Problem::new(message)
    }
}

impl From<&str> for Problem {
    fn from(message: &str) -> Problem {
        Problem::new(message)
    }
}

/// Deserializes `text` into `T`, within [`LIMITS`]. `document` says what the whole
/// file must be, for a file of the wrong shape: "a rule file is a mapping with
/// `groups:`" gives `1:1: a rule file is a mapping with `groups:`, not a list`.
pub fn from_str<T: DeserializeOwned>(text: &str, document: &str) -> Result<T, YamlError> {
    serde_saphyr::from_str_with_options(text, limits::options())
        .map_err(|e| describe(&e, text, document))
}

/// Rewords a library error in the user's terms, using the text to say which key holds
/// the bad value and what was written there.
fn describe(err: &Error, text: &str, document: &str) -> YamlError {
    let alias_use = alias_reference(err);
    let err = innermost(err);
    let mut position = err.location().as_ref().and_then(Position::of);
    let site = position.map(|p| Site::find(text, p)).unwrap_or_default();
    let mut kind = YamlErrorKind::Other;
    let message = match err {
        Error::Unexpected { expected, .. } => site.must_be(node_kind(expected), document),
        Error::InvalidScalar { ty, .. } => site.must_be(scalar_kind(ty), document),
        Error::InvalidBooleanStrict { .. } => site.must_be("true or false", document),
        Error::SerdeInvalidType { expected, .. } | Error::SerdeInvalidValue { expected, .. } => {
            site.must_be(&serde_expectation(expected), document)
        }
        Error::NullIntoString { .. } => site.with_key("a value is missing"),
        Error::SerdeUnknownVariant {
            variant, expected, ..
        } => site.must_be_one_of(variant, expected),
        Error::SerdeUnknownField {
            field, expected, ..
        } => {
            kind = YamlErrorKind::UnknownField(field.clone());
            unknown_field(field, expected)
        }
        Error::SerdeMissingField { field, .. } => format!("required field {field} is missing"),
        Error::DuplicateMappingKey { key, .. } => duplicate_key(text, position, key.as_deref()),
        Error::Message { msg, .. } => site.with_key(msg),
        Error::ExternalMessage { msg, .. } => {
            let message = scanner_message(msg);
            if message.starts_with("tabs") {
                position = position.map(|p| at_first_tab(text, p));
            }
            message
        }
        Error::Eof { .. } => "unexpected end of the file".to_owned(),
        Error::MultipleDocuments { .. } => {
            "the file holds more than one YAML document (a second one starts with `---`); \
             only one is allowed"
                .to_owned()
        }
        Error::InvalidUtf8Input => "the file is not UTF-8 text".to_owned(),
        Error::UnknownAnchor { .. } => {
            "this alias (`*name`) refers to an anchor (`&name`) that is not defined before it"
                .to_owned()
        }
        Error::Budget { breach, .. } => {
            if let Some(at) = alias_use {
                // Point at the alias being expanded, not at the anchor it stands for.
                position = Position::of(&at).or(position);
            }
            over_budget(breach, alias_use.is_some())
        }
        Error::AliasReplayLimitExceeded { .. } | Error::AliasReplayCounterOverflow { .. } => {
            alias_bomb(&format!(
                "more than {} YAML events in all",
                count(LIMITS.max_alias_expansion)
            ))
        }
        Error::AliasReplayStackDepthExceeded { .. } => format!(
            "aliases (`*name`) are expanded inside one another more than {} levels deep, the \
             most Kiln follows; reuse anchors less deeply",
            count(LIMITS.max_alias_nesting)
        ),
        Error::AliasExpansionLimitExceeded {
            max_expansions_per_anchor,
            ..
        } => format!(
            "one anchor (`&name`) is expanded by aliases more than {} times, the most Kiln \
             expands; write the repeated parts out, or reuse the anchor less",
            count(*max_expansions_per_anchor)
        ),
        other => {
            use serde_saphyr::MessageFormatter;
            serde_saphyr::UserMessageFormatter
                .format_message(other)
                .into_owned()
        }
    };
    YamlError {
        position: position.unwrap_or(Position { line: 1, column: 1 }),
        message,
        kind,
    }
}

/// The scanner reports a tab in indentation just after it; users look for the tab.
fn at_first_tab(text: &str, at: Position) -> Position {
    let tab = text
        .lines()
        .nth(at.line.saturating_sub(1))
        .and_then(|l| l.chars().take(at.column).position(|c| c == '\t'));
    match tab {
        Some(i) => Position {
            line: at.line,
            column: i + 1,
        },
        None => at,
    }
}

/// Where the alias was used whose expansion failed, if the error happened while one
/// was being expanded.
fn alias_reference(mut err: &Error) -> Option<Location> {
    loop {
        match err {
            Error::WithSnippet { error, .. } => err = error,
            Error::AliasError { locations, .. } => return Some(locations.reference_location),
            _ => return None,
        }
    }
}

/// The error itself, without the library's wrappers (snippets, alias sites).
fn innermost(mut err: &Error) -> &Error {
    loop {
        match err {
            Error::WithSnippet { error, .. } | Error::AliasError { error, .. } => err = error,
            other => return other,
        }
    }
}

/// The library's names of YAML node kinds, as a user says them.
fn node_kind(expected: &str) -> &str {
    match expected {
        "mapping start" | "mapping" => "a mapping (key: value pairs)",
        "sequence start" | "sequence" => "a list",
        "string scalar" | "scalar" | "plain scalar" | "string" => "a single value",
        other => other,
    }
}

/// The Rust types the library names when a scalar does not parse.
fn scalar_kind(ty: &str) -> &str {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" | "floating point" => "a number",
        "bool" | "boolean" => "true or false",
        "char" => "a single character",
        _ => "a single value",
    }
}

/// Serde's `expected` texts (`a string`, `u64`, `struct RawGroup`, `a sequence`).
fn serde_expectation(expected: &str) -> String {
    let e = expected.trim();
    if e.starts_with("struct ") || e.contains("map") {
        return "a mapping (key: value pairs)".to_owned();
    }
    if e.contains("sequence") || e.starts_with("tuple") {
        return "a list".to_owned();
    }
    if e.contains("string") || e.contains("str") {
        return "a string".to_owned();
    }
    if e.contains("bool") {
        return "true or false".to_owned();
    }
    let kind = scalar_kind(e.trim_start_matches("a ").trim_start_matches("an "));
    if kind != "a single value" {
        return kind.to_owned();
    }
    // A visitor's own words ("a duration"): already the user's terms.
    e.to_owned()
}

/// The message for an unknown key: Prometheus's wording, plus the key the user
/// probably meant.
fn unknown_field(field: &str, expected: &[&str]) -> String {
    let mut msg = format!("field {field} not found");
    let best = expected
        .iter()
        .filter(|e| !e.starts_with('_'))
        .map(|e| (edit_distance(field, e), *e))
        .min();
    match best {
        Some((d, e)) if d <= 2 || (d <= 4 && d * 3 <= field.len()) => {
            msg.push_str(&format!(" (did you mean {e}?)"));
        }
        _ if !expected.is_empty() && expected.len() <= 10 => {
            let fields: Vec<&str> = expected
                .iter()
                .copied()
                .filter(|e| !e.starts_with('_'))
                .collect();
            msg.push_str(&format!(" (valid fields here: {})", fields.join(", ")));
        }
        _ => {}
    }
    msg
}

/// Levenshtein distance, for suggesting the key a typo meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A key written twice in one mapping, with the line of its first use when the text
/// shows it (Prometheus 3's wording for rule files).
fn duplicate_key(text: &str, at: Option<Position>, key: Option<&str>) -> String {
    let Some(key) = key else {
        return "a mapping key is written twice in the same mapping".to_owned();
    };
    match at.and_then(|at| first_use_of_key(text, at, key)) {
        Some(line) => format!("mapping key {key:?} already defined at line {line}"),
        None => format!("mapping key {key:?} already defined earlier in the same mapping"),
    }
}

/// The line where `key`, written again at `at`, was first written in the same mapping:
/// earlier on the same line (a flow mapping) or on an earlier line at the same column,
/// before the mapping ends (a line indented less).
fn first_use_of_key(text: &str, at: Position, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let line = *lines.get(at.line.checked_sub(1)?)?;
    let before: String = line.chars().take(at.column.saturating_sub(1)).collect();
    let same_line = before
        .split([',', '{'])
        .any(|part| strip_quotes(part.split(':').next().unwrap_or("").trim()) == key);
    if same_line && before.contains('{') {
        return Some(at.line);
    }
    for n in (0..at.line - 1).rev() {
        let l = lines[n];
        let content = l.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let (col, content) = key_start(l);
        if col < at.column {
            return None;
        }
        if col == at.column && key_of_line(content).as_deref() == Some(key) {
            return Some(n + 1);
        }
    }
    None
}

/// The column where a line's key starts (after any `- ` item markers), and the text
/// from there.
fn key_start(line: &str) -> (usize, &str) {
    let mut col = 1 + line.len() - line.trim_start().len();
    let mut rest = line.trim_start();
    while let Some(r) = rest.strip_prefix("- ") {
        let trimmed = r.trim_start();
        col += rest.len() - trimmed.len();
        rest = trimmed;
    }
    (col, rest)
}

/// The key of a `key: value` (or `key:`) line, unquoted.
fn key_of_line(content: &str) -> Option<String> {
    let content = strip_comment(content);
    let key = if let Some(k) = content.strip_suffix(':') {
        k
    } else {
        content.split_once(": ")?.0
    };
    let key = strip_quotes(key.trim());
    (!key.is_empty() && !key.starts_with(['{', '[', '-'])).then(|| key.to_owned())
}

fn strip_comment(s: &str) -> &str {
    match s.find(" #") {
        Some(i) => s[..i].trim_end(),
        None => s.trim_end(),
    }
}

fn strip_quotes(s: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// The YAML scanner's messages (the same libyaml wording Prometheus's parser uses),
/// with advice where the usual cause is known.
fn scanner_message(msg: &str) -> String {
    let msg = msg.trim();
    if msg.starts_with("tabs disallowed") {
        return "tabs are not allowed for indentation in YAML; indent with spaces".to_owned();
    }
    if msg == "recursion limit exceeded" {
        // The scanner's nesting limit, set to the budget's depth.
        return too_deep();
    }
    let msg = msg
        .strip_prefix("while parsing a block collection, ")
        .unwrap_or(msg);
    let msg = msg
        .strip_prefix("while parsing a block mapping, ")
        .unwrap_or(msg);
    if msg.contains("mapping values are not allowed") || msg.contains("did not find expected") {
        return format!("{msg} (check the indentation of this line and the one above)");
    }
    msg.to_owned()
}

/// What the text says about the place of an error: the key whose value is there, and
/// what was written.
#[derive(Debug, Default)]
struct Site {
    /// The key holding the value (`rule_files`), if the text shows one.
    key: Option<String>,
    /// The value is an item of the list under `key` (`- value`).
    list_item: bool,
    /// The value is the whole document: no key holds it.
    root: bool,
    /// What was written, as a user would call it: `"rules.yml"`, `a list`.
    found: Option<String>,
}

impl Site {
    fn find(text: &str, at: Position) -> Site {
        let lines: Vec<&str> = text.lines().collect();
        let Some(line) = at.line.checked_sub(1).and_then(|i| lines.get(i)) else {
            return Site::default();
        };
        let before: String = line.chars().take(at.column.saturating_sub(1)).collect();
        let value: String = line.chars().skip(at.column.saturating_sub(1)).collect();
        let prefix = before.trim_end();
        if let Some(open) = innermost_open_bracket(prefix) {
            return Site::in_flow(prefix, open, &value);
        }
        let found = describe_node(&value);
        // `key: value` on one line.
        if let Some(k) = prefix.strip_suffix(':') {
            let (_, k) = key_start(k);
            let key = strip_quotes(k.trim());
            if !key.is_empty() && !key.contains([',', '{', '[']) {
                return Site {
                    key: Some(key.to_owned()),
                    list_item: false,
                    root: false,
                    found,
                };
            }
        }
        // `- value`: an item of the list whose key is above; otherwise a block node
        // whose key is the nearest line above indented less.
        let list_item = prefix.trim_start().starts_with('-')
            && prefix
                .trim_start()
                .trim_start_matches(['-', ' '])
                .is_empty();
        let node_col = if list_item {
            1 + before.len() - before.trim_start().len()
        } else {
            at.column
        };
        if !prefix.trim().is_empty() && !list_item {
            // Something this reading of the line does not follow: no key to name.
            return Site {
                found,
                ..Site::default()
            };
        }
        for l in lines[..at.line - 1].iter().rev() {
            let content = l.trim_start();
            if content.is_empty() || content.starts_with('#') || content == "---" {
                continue;
            }
            let col = 1 + l.len() - content.len();
            let sibling_item = col == node_col && content.starts_with('-');
            if col < node_col || (col == node_col && list_item && !sibling_item) {
                let (_, k) = key_start(content);
                let key = strip_comment(k)
                    .strip_suffix(':')
                    .map(|k| strip_quotes(k.trim()));
                return Site {
                    key: key.map(str::to_owned),
                    list_item,
                    root: false,
                    found,
                };
            }
            if col == node_col && !sibling_item && !list_item {
                // A sibling key: the node is a value in a mapping that started above;
                // nothing more to say about its key.
                return Site {
                    found,
                    ..Site::default()
                };
            }
        }
        Site {
            key: None,
            list_item,
            root: !list_item,
            found,
        }
    }

    /// A node inside a flow collection (`{a: 1, b: [x]}`), whose innermost unclosed
    /// bracket in `prefix` (the line before the node) is at byte `open`.
    fn in_flow(prefix: &str, open: usize, value: &str) -> Site {
        // A plain scalar in a flow collection ends at the next separator.
        let scalar_end = if value.starts_with(['"', '\'']) {
            value.len()
        } else {
            value.find([',', ']', '}']).unwrap_or(value.len())
        };
        let found = describe_node(&value[..scalar_end]);
        let entry = prefix[open + 1..].rsplit(',').next().unwrap_or("").trim();
        if prefix[open..].starts_with('{') {
            // `{key: value`: the value of the entry's key.
            let key = entry
                .strip_suffix(':')
                .map(|k| strip_quotes(k.trim()).to_owned());
            return Site {
                key,
                found,
                ..Site::default()
            };
        }
        // `[value` or `[a, value`: an item of the list, whose key comes before the `[`.
        let key = prefix[..open]
            .trim_end()
            .strip_suffix(':')
            .map(|k| strip_quotes(key_start(k).1.trim()).to_owned())
            .filter(|k| !k.is_empty() && !k.contains(['{', '[', ',']));
        Site {
            list_item: entry.is_empty() && key.is_some(),
            key,
            found,
            ..Site::default()
        }
    }

    /// `<key> must be <expected>, not <found>`, in whichever form the text allows.
    fn must_be(&self, expected: &str, document: &str) -> String {
        let not = self
            .found
            .as_ref()
            .map(|f| format!(", not {f}"))
            .unwrap_or_default();
        match (&self.key, self.list_item) {
            (Some(k), true) => format!("each entry of {k} must be {expected}{not}"),
            (Some(k), false) => format!("{k} must be {expected}{not}"),
            (None, _) if self.root => format!("{document}{not}"),
            (None, _) => format!("expected {expected}{not}"),
        }
    }

    /// For a value that is not one of the allowed words.
    fn must_be_one_of(&self, value: &str, allowed: &[&str]) -> String {
        let choices = match allowed {
            [] => "a known value".to_owned(),
            [one] => one.to_string(),
            [a, b] => format!("{a} or {b}"),
            more => format!("one of {}", more.join(", ")),
        };
        let what = self.key.as_deref().unwrap_or("the value");
        format!("{what} must be {choices}, not {value:?}")
    }

    /// A message prefixed with the key it is about, when known.
    fn with_key(&self, message: &str) -> String {
        match &self.key {
            Some(k) => format!("{k}: {message}"),
            None => message.to_owned(),
        }
    }
}

/// The byte index of the innermost `[` or `{` that `prefix` leaves open (quoted text
/// aside), if any.
fn innermost_open_bracket(prefix: &str) -> Option<usize> {
    let mut open = Vec::new();
    let mut quote: Option<char> = None;
    for (i, c) in prefix.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => open.push(i),
            (None, ']' | '}') => {
                open.pop();
            }
            (None, '#') if prefix[..i].ends_with(' ') => break,
            _ => {}
        }
    }
    open.pop()
}

/// What a node starting with `text` (the rest of its line) is, as a user would call
/// it.
fn describe_node(text: &str) -> Option<String> {
    let t = strip_comment(text.trim());
    if t.is_empty() {
        return None;
    }
    if t.starts_with('[') || t == "-" || t.starts_with("- ") {
        return Some("a list".to_owned());
    }
    if t.starts_with('{') || key_of_line(t).is_some() && !t.starts_with(['"', '\'']) {
        return Some("a mapping".to_owned());
    }
    if t.starts_with(['|', '>']) {
        return Some("a block of text".to_owned());
    }
    if matches!(t, "~" | "null" | "Null" | "NULL") {
        return Some("null".to_owned());
    }
    let value = strip_quotes(t);
    let shown: String = value.chars().take(40).collect();
    let ellipsis = if value.chars().count() > 40 {
        "..."
    } else {
        ""
    };
    Some(format!("\"{shown}{ellipsis}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        #[serde(default)]
        files: Vec<String>,
        #[serde(default)]
        limit: u64,
        #[serde(default)]
        items: Vec<Item>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        #[serde(default)]
        labels: std::collections::BTreeMap<String, String>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Slow,
    }

    fn check(text: &str, want: &str) {
        let got = from_str::<Doc>(text, "a test document is a mapping")
            .map(|d| format!("parsed: {d:?}"))
            .unwrap_or_else(|e| e.to_string());
        assert_eq!(got, want, "{text:?}");
    }

    #[test]
    fn messages_say_what_is_wrong_where() {
        check("files: a.yml\n", "1:8: files must be a list, not \"a.yml\"");
        check(
            "- a\n- b\n",
            "1:1: a test document is a mapping, not a list",
        );
        check(
            "just words\n",
            "1:1: a test document is a mapping, not \"just words\"",
        );
        check(
            "limit: many\n",
            "1:8: limit must be a whole number, 0 or more, not \"many\"",
        );
        check(
            "items:\n  name: x\n",
            "2:3: items must be a list, not a mapping",
        );
        check(
            "items:\n  - x\n",
            "2:5: each entry of items must be a mapping (key: value pairs), not \"x\"",
        );
        check(
            "items:\n  - name: a\n    labels: [x]\n",
            "3:13: labels must be a mapping (key: value pairs), not a list",
        );
        check(
            "items: [{name: a, labels: {x: [1]}}]\n",
            "1:31: x must be a single value, not a list",
        );
        check(
            "items: [{name: a, labels: {x: 1}}, 5]\n",
            "1:36: each entry of items must be a mapping (key: value pairs), not \"5\"",
        );
        check(
            "items: [7]\n",
            "1:9: each entry of items must be a mapping (key: value pairs), not \"7\"",
        );
        check(
            "limit: *nope\n",
            "1:8: this alias (`*name`) refers to an anchor (`&name`) that is not defined before it",
        );
        check(
            "mode: medium\n",
            "1:7: mode must be fast or slow, not \"medium\"",
        );
        check(
            "limt: 1\n",
            "1:1: field limt not found (did you mean limit?)",
        );
        check(
            "items:\n  - name: a\n    labelz: {}\n",
            "3:5: field labelz not found (did you mean labels?)",
        );
        check(
            "items:\n  - name: a\n    colour: {}\n",
            "3:5: field colour not found (valid fields here: name, labels)",
        );
        check(
            "items:\n  - labels: {}\n",
            "2:5: required field name is missing",
        );
        check(
            "limit: 1\nfiles: []\nlimit: 2\n",
            "3:1: mapping key \"limit\" already defined at line 1",
        );
        check(
            "items:\n  - name: a\n    labels: {x: 1, x: 2}\n",
            "3:20: mapping key \"x\" already defined at line 3",
        );
        check(
            "items:\n\t- name: a\n",
            "2:1: tabs are not allowed for indentation in YAML; indent with spaces",
        );
        check("files: [a\n", "1:8: unclosed bracket '['");
        check(
            "items:\n  - name: a\n     labels: {}\n",
            "3:12: mapping values are not allowed in this context \
             (check the indentation of this line and the one above)",
        );
        check(
            "limit: 1\n---\nlimit: 2\n",
            "3:1: the file holds more than one YAML document (a second one starts with `---`); \
             only one is allowed",
        );
    }

    #[test]
    fn problems_keep_the_innermost_place() {
        let doc: serde_saphyr::Spanned<Doc> =
            serde_saphyr::from_str("limit: 1\nfiles: []\n").expect("parses");
        let p = Problem::new("bad").or_at(&doc.referenced).within("outer");
        assert_eq!(p.position, Some(Position { line: 1, column: 1 }));
        assert_eq!(p.message, "outer: bad");
        let inner = Problem {
            position: Some(Position { line: 4, column: 2 }),
            message: "x".into(),
        };
        assert_eq!(
            inner.or_at(&doc.referenced).position,
            Some(Position { line: 4, column: 2 })
        );
    }
}
