//! Label sets.
//!
//! A [`Labels`] is a set of `name="value"` pairs sorted by name with unique names, stored as
//! one packed byte buffer: for each pair `uvarint(len(name)) name uvarint(len(value)) value`.
//! One allocation per series keeps the memory per active series small and makes cloning,
//! hashing and equality a single pass over contiguous bytes.
//!
//! Invariants (upheld by every constructor):
//! - pairs are sorted by name, byte-wise, and names are unique;
//! - no pair has an empty value (Prometheus treats an empty value as "label absent");
//! - the buffer is canonical, so two equal label sets have identical buffers, and
//!   [`Labels::hash`] is a hash of the buffer.

use std::cmp::Ordering;
use std::fmt;

/// The label name that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Whether `name` is a valid label name in the classic Prometheus syntax
/// (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One borrowed label pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// A sorted, packed label set. See the module docs for the layout and invariants.
///
/// The buffer is shared (`Arc`): cloning a label set, which queries do for every series
/// they touch, copies a pointer, not the labels.
#[derive(Clone, Default)]
pub struct Labels {
    buf: std::sync::Arc<[u8]>,
}

/// Equal label sets have equal buffers. Clones share one buffer, and the storage
/// compares the labels a writer hands back with the series' own on every append, so
/// the pointer is checked first: `Arc`'s own `PartialEq` compares the bytes of an
/// unsized `[u8]` even when both sides are the same allocation.
impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        std::sync::Arc::ptr_eq(&self.buf, &other.buf) || self.buf[..] == other.buf[..]
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.buf[..].hash(state);
    }
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Labels {
        Labels::default()
    }

    /// Builds a label set from pairs in any order. Later duplicates of a name win; pairs
    /// with an empty value are dropped.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Labels {
        let mut b = LabelsBuilder::new();
        for (n, v) in pairs {
            b.set(n.as_ref(), v.as_ref());
        }
        b.build()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Iterates the pairs in name order. Does not allocate.
    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter { rest: &self.buf }
    }

    /// Iterates the pairs in name order as bytes, without checking UTF-8 (they are
    /// valid: labels are only built from strings). For hashing and comparing.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let mut rest: &[u8] = &self.buf;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let name = take_bytes(&mut rest);
            let value = take_bytes(&mut rest);
            Some((name, value))
        })
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        let mut rest: &[u8] = &self.buf;
        while !rest.is_empty() {
            let n = take_bytes(&mut rest);
            match n.cmp(name.as_bytes()) {
                Ordering::Less => {
                    take_bytes(&mut rest);
                }
                Ordering::Equal => return Some(take_str(&mut rest)),
                Ordering::Greater => return None,
            }
        }
        None
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// A 64-bit hash of the label set (xxh3 of the canonical buffer). Stable within one
    /// build of Kiln; not a persisted format.
    pub fn hash(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.buf)
    }

    /// The address of the shared buffer: equal for clones of one label set, so caches
    /// can recognise a label set they saw without comparing bytes. Valid as an identity
    /// only while a clone is kept alive.
    pub fn buffer_addr(&self) -> usize {
        self.buf.as_ptr() as usize
    }

    /// Bytes used by the packed buffer (for memory accounting).
    pub fn packed_len(&self) -> usize {
        self.buf.len()
    }

    /// The packed buffer (see the module docs), for Kiln's own files that store label
    /// sets as they are in memory. Read back with [`Labels::from_packed`].
    pub fn packed(&self) -> &[u8] {
        &self.buf
    }

    /// The label set whose packed buffer is `bytes`, in one allocation; `None` unless
    /// `bytes` is exactly the canonical buffer of a label set (well-formed lengths,
    /// UTF-8, names strictly increasing, no empty value), so that equality and hashing
    /// stay byte comparisons.
    pub fn from_packed(bytes: &[u8]) -> Option<Labels> {
        // Checked in place: every length minimally encoded (as `put_str` writes it),
        // names sorted and unique, values not empty, all UTF-8. Such bytes are exactly
        // the buffer the builder would make, so they are taken as they are.
        // A buffer all ASCII (the usual case: short lengths, ASCII names and values)
        // holds only valid UTF-8 strings: one vectorized check instead of one per
        // string. Names compare as bytes, which is how `str` orders them.
        let ascii = bytes.is_ascii();
        let mut rest = bytes;
        let mut previous: Option<&[u8]> = None;
        while !rest.is_empty() {
            let name = checked_take(&mut rest)?;
            let value = checked_take(&mut rest)?;
            if !ascii && (std::str::from_utf8(name).is_err() || std::str::from_utf8(value).is_err())
            {
                return None;
            }
            if value.is_empty() || previous.is_some_and(|p| p >= name) {
                return None;
            }
            previous = Some(name);
        }
        Some(Labels {
            buf: std::sync::Arc::from(bytes),
        })
    }

    /// The pairs whose names `keep` accepts, as a new label set. Copies the kept pairs'
    /// bytes into one new buffer (one allocation); returns a clone of `self` (no
    /// allocation) when everything is kept.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> Labels {
        let mut rest: &[u8] = &self.buf;
        let mut out: Option<Vec<u8>> = None;
        let mut offset = 0;
        while !rest.is_empty() {
            let before = rest.len();
            let name = take_str(&mut rest);
            let _ = take_bytes(&mut rest);
            let pair_len = before - rest.len();
            let keep_it = keep(name);
            match (&mut out, keep_it) {
                (Some(buf), true) => buf.extend_from_slice(&self.buf[offset..offset + pair_len]),
                (None, false) => out = Some(self.buf[..offset].to_vec()),
                _ => {}
            }
            offset += pair_len;
        }
        match out {
            None => self.clone(),
            Some(buf) => Labels {
                buf: std::sync::Arc::from(buf),
            },
        }
    }

    /// A builder seeded with these labels, to add, change or remove pairs.
    pub fn to_builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            pairs: self
                .iter()
                .map(|l| (l.name.to_owned(), l.value.to_owned()))
                .collect(),
        }
    }
}

impl Ord for Labels {
    /// Prometheus's order: pair by pair, by name then value; a prefix sorts first.
    fn cmp(&self, other: &Self) -> Ordering {
        // Strings compare as their UTF-8 bytes: no need to check them.
        let mut a = self.iter_bytes();
        let mut b = other.iter_bytes();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
                (Some(x), Some(y)) => match x.0.cmp(y.0).then(x.1.cmp(y.1)) {
                    Ordering::Equal => continue,
                    o => return o,
                },
            }
        }
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Labels {
    /// Formats like Prometheus's `Labels.String()`: `{a="1", b="2"}` with values quoted
    /// as Go's `strconv.Quote` does. `promtool tsdb dump` prints this form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(self.buf.len() + 8);
        s.push('{');
        for (i, l) in self.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(l.name);
            s.push('=');
            go_quote_into(&mut s, l.value);
        }
        s.push('}');
        f.write_str(&s)
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Iterator over the pairs of a [`Labels`].
pub struct LabelsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = Label<'a>;

    fn next(&mut self) -> Option<Label<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let name = take_str(&mut self.rest);
        let value = take_str(&mut self.rest);
        Some(Label { name, value })
    }
}

fn take_str<'a>(rest: &mut &'a [u8]) -> &'a str {
    // The buffer is only ever built from `&str` pairs by `LabelsBuilder::build`.
    std::str::from_utf8(take_bytes(rest)).unwrap_or_default()
}

/// The next length-prefixed string of untrusted bytes; `None` when the length is
/// malformed, not minimally encoded, or runs past the end.
fn checked_take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let mut len = 0usize;
    let mut i = 0;
    loop {
        let b = *rest.get(i)?;
        len |= usize::from(b & 0x7f).checked_shl(7 * i as u32)?;
        i += 1;
        if b < 0x80 {
            // A zero last byte after others adds nothing: a longer encoding than
            // `put_str` writes.
            if b == 0 && i > 1 {
                return None;
            }
            break;
        }
        if i >= 10 {
            return None;
        }
    }
    let end = i.checked_add(len)?;
    let s = rest.get(i..end)?;
    *rest = &rest[end..];
    Some(s)
}

/// The next length-prefixed string of a packed buffer, as bytes (no UTF-8 check: for
/// comparisons and hashing, the hot paths of queries).
fn take_bytes<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let mut len = 0usize;
    let mut shift = 0;
    let mut i = 0;
    loop {
        let b = rest[i];
        len |= ((b & 0x7f) as usize) << shift;
        i += 1;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    let bytes = &rest[i..i + len];
    *rest = &rest[i + len..];
    bytes
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
    buf.extend_from_slice(s.as_bytes());
}

/// Collects pairs in any order and builds a canonical [`Labels`].
#[derive(Debug, Default, Clone)]
pub struct LabelsBuilder {
    pairs: Vec<(String, String)>,
}

impl LabelsBuilder {
    pub fn new() -> LabelsBuilder {
        LabelsBuilder::default()
    }

    /// Sets `name` to `value`, replacing an earlier value. An empty value removes it.
    /// Constant time: duplicates are resolved by [`build`](Self::build), the last one
    /// set winning.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.pairs.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Removes `name`.
    pub fn del(&mut self, name: &str) -> &mut Self {
        self.pairs.retain(|(n, _)| n != name);
        self
    }

    /// Clears the builder for reuse, keeping its allocation.
    pub fn reset(&mut self) {
        self.pairs.clear();
    }

    /// Builds the canonical label set.
    pub fn build(&self) -> Labels {
        // A stable sort keeps the order of `set` calls among equal names; the last wins.
        let mut sorted: Vec<&(String, String)> = self.pairs.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut deduped: Vec<&(String, String)> = Vec::with_capacity(sorted.len());
        for p in sorted {
            match deduped.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => deduped.push(p),
            }
        }
        deduped.retain(|(_, v)| !v.is_empty());
        let sorted = deduped;
        let cap = sorted.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
        let mut buf = Vec::with_capacity(cap);
        for (n, v) in sorted {
            put_str(&mut buf, n);
            put_str(&mut buf, v);
        }
        Labels {
            buf: std::sync::Arc::from(buf),
        }
    }
}

/// Appends `s` quoted the way Go's `strconv.Quote` does: printable characters as they are,
/// `\a \b \f \n \r \t \v \\ \"` escaped, other control and non-printable characters as
/// `\xNN`, `\uNNNN` or `\UNNNNNNNN`.
pub fn go_quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
}

/// An approximation of Go's `unicode.IsPrint`: letters, marks, numbers, punctuation,
/// symbols and the ASCII space. Rust's std exposes no general categories, so control
/// characters, non-ASCII spaces, the common format characters (Cf), surrogates and
/// private-use code points are treated as non-printable.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format_or_private = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF | 0xFFFE | 0xFFFF);
    !format_or_private
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_round_trip_and_refusals() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "ä"), ("x", "1")]);
        assert_eq!(Labels::from_packed(l.packed()), Some(l.clone()));
        assert_eq!(Labels::from_packed(&[]), Some(Labels::empty()));
        let pair = |n: &[u8], v: &[u8]| {
            let mut b = vec![n.len() as u8];
            b.extend_from_slice(n);
            b.push(v.len() as u8);
            b.extend_from_slice(v);
            b
        };
        for (what, bytes) in [
            ("unsorted", [pair(b"b", b"1"), pair(b"a", b"1")].concat()),
            (
                "duplicate name",
                [pair(b"a", b"1"), pair(b"a", b"2")].concat(),
            ),
            ("empty value", pair(b"a", b"")),
            ("not UTF-8", pair(b"a", &[0xff])),
            ("length past the end", vec![5, b'a']),
            ("name without value", vec![1, b'a']),
            ("overlong length", vec![0x81, 0x00, b'a', 1, b'1']),
            ("endless length", vec![0xff; 12]),
        ] {
            assert_eq!(Labels::from_packed(&bytes), None, "{what}");
        }
    }

    #[test]
    fn sorted_and_deduplicated() {
        let l = Labels::from_pairs(&[("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        let got: Vec<_> = l.iter().map(|l| (l.name, l.value)).collect();
        assert_eq!(got, vec![("a", "1"), ("b", "3")]);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn order_matches_prometheus() {
        let a = Labels::from_pairs(&[("a", "1")]);
        let ab = Labels::from_pairs(&[("a", "1"), ("b", "1")]);
        let a2 = Labels::from_pairs(&[("a", "2")]);
        assert!(a < ab);
        assert!(ab < a2);
        assert_eq!(a.cmp(&a.clone()), Ordering::Equal);
    }

    #[test]
    fn display_quotes_like_go() {
        let cases = [
            ("plain", r#"{__name__="up", v="plain"}"#),
            ("a\"b\\c\nd", r#"{__name__="up", v="a\"b\\c\nd"}"#),
            ("日本", r#"{__name__="up", v="日本"}"#),
            ("\u{1}", r#"{__name__="up", v="\x01"}"#),
            ("\u{a0}", r#"{__name__="up", v="\u00a0"}"#),
        ];
        for (v, want) in cases {
            let l = Labels::from_pairs(&[("__name__", "up"), ("v", v)]);
            assert_eq!(l.to_string(), want);
        }
    }

    #[test]
    fn retain_copies_only_kept_pairs() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("a", "1"), ("b", "2")]);
        assert_eq!(
            l.retain(|n| n != "__name__"),
            Labels::from_pairs(&[("a", "1"), ("b", "2")])
        );
        assert_eq!(l.retain(|n| n == "b"), Labels::from_pairs(&[("b", "2")]));
        assert_eq!(l.retain(|_| true), l);
        assert!(l.retain(|_| false).is_empty());
    }

    #[test]
    fn long_strings_round_trip() {
        let long = "x".repeat(300);
        let l = Labels::from_pairs(&[("k", long.as_str())]);
        assert_eq!(l.get("k"), Some(long.as_str()));
    }

    proptest::proptest! {
        #[test]
        fn builder_round_trips(pairs in proptest::collection::btree_map("[a-z_]{1,8}", ".{1,20}", 0..10)) {
            let v: Vec<(String, String)> = pairs.clone().into_iter().collect();
            let l = Labels::from_pairs(&v);
            let back: Vec<(String, String)> = l.iter().map(|l| (l.name.to_owned(), l.value.to_owned())).collect();
            proptest::prop_assert_eq!(back, v);
        }
    }
}
