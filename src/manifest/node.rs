//! The located YAML tree: the manifest parsed into [`Node`]s, each value and each mapping key
//! with the line, column and length it came from.
//!
//! The events come from serde-saphyr's YAML parser (`serde_saphyr::granit_parser`); the tree is
//! built here, without going through serde. Building it directly is several times faster than
//! deserializing `serde_saphyr::Spanned` values (a 100,000-account manifest parses in a fraction
//! of the time), needs no recursion (so no stack limits to worry about), and keeps every
//! duplicate key for the validator to report.
//!
//! Plain scalars are resolved with the YAML 1.2 core schema (`yes` and `on` stay strings; `0x10`
//! is 16). Only the standard `!!str`/`!!int`/`!!float`/`!!bool`/`!!null`/`!!seq`/`!!map` tags are
//! accepted. Hostile input is stopped cheaply: deep nesting, alias bombs (billion laughs) and
//! multi-document streams each become one located diagnostic, while a 100,000-account manifest
//! passes comfortably.

use std::borrow::Cow;

use serde_saphyr::granit_parser::{
    ErrorKind, Event, Options as ParserOptions, Parser, ScalarStyle, ScanError, Span, Tag,
};

use super::diagnostic::Diagnostic;

/// Deepest nesting of lists and mappings accepted (a manifest needs four levels).
pub(crate) const MAX_DEPTH: usize = 64;
/// Most YAML values (scalars, lists and mappings, counting those copied by aliases) accepted.
/// A 100,000-account manifest with its own token list per account has about 700,000.
pub(crate) const MAX_NODES: usize = 2_000_000;
/// Most values that aliases (`*name`) may copy in one manifest: reusing an anchored token list
/// in thousands of accounts is fine, a billion laughs is not.
pub(crate) const MAX_ALIAS_NODES: usize = 250_000;
/// Most bytes of text that aliases may copy in one manifest.
pub(crate) const MAX_ALIAS_BYTES: usize = 16 * 1024 * 1024;

/// A YAML value and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// 1-based line.
    pub(crate) line: u32,
    /// 1-based column, in characters.
    pub(crate) column: u32,
    /// Length in characters of the value's source text (quotes included; 0 or 1 for
    /// collections, whose end is not tracked).
    pub(crate) length: u32,
    /// Byte offset of the value's source text ([`UNKNOWN_OFFSET`] when not known), so that
    /// finding it stays cheap even on a very long line.
    pub(crate) offset: u32,
    /// The value.
    pub(crate) value: NodeValue,
}

/// [`Node::offset`] of a node whose place is only known by line and column.
pub(crate) const UNKNOWN_OFFSET: u32 = u32::MAX;

/// A YAML value. Mappings keep their pairs in order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeValue {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false` (YAML 1.2 spellings only).
    Bool(bool),
    /// An integer (saturated at the bounds of `i128`).
    Int(i128),
    /// A floating-point number.
    Float(f64),
    /// A string (quoted, or plain text that is not a number, boolean or null).
    Str(String),
    /// A list.
    Seq(Vec<Node>),
    /// A mapping, pairs in source order (duplicates kept).
    Map(Vec<(Node, Node)>),
}

impl NodeValue {
    /// The YAML type's name, with an article where English wants one.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a float",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// A diagnostic at this node, underlining it.
    pub(crate) fn diagnostic(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.line, self.column, self.length, message)
    }
}

/// Parses YAML text into a located tree, or one diagnostic where parsing stopped.
///
/// An empty stream (nothing but comments) is a `Null` node at 1:1.
pub(crate) fn parse(text: &str) -> Result<Node, Diagnostic> {
    let mut options = ParserOptions::default();
    options.set_emit_comments(false);
    // The parser's own limits report at the same place as our check, with our message.
    options.block_nesting_limit = MAX_DEPTH;
    options.flow_nesting_limit = MAX_DEPTH;
    let mut builder = Builder::default();
    for item in Parser::new_from_str_with_options(text, options) {
        match item {
            Ok((event, span)) => {
                if builder.event(event, span)? {
                    break;
                }
            }
            Err(e) => return Err(scan_error(&e, text)),
        }
    }
    Ok(builder.root.unwrap_or(Node {
        line: 1,
        column: 1,
        length: 0,
        offset: 0,
        value: NodeValue::Null,
    }))
}

/// Where a node starts: 1-based line and column, length in characters, byte offset.
#[derive(Debug, Clone, Copy)]
struct At {
    line: u32,
    column: u32,
    length: u32,
    offset: u32,
}

impl At {
    fn of(span: &Span) -> At {
        At {
            line: clamp(span.start.line()),
            column: clamp(span.start.col().saturating_add(1)),
            length: clamp(span.end.index().saturating_sub(span.start.index())),
            offset: span
                .start
                .byte_offset()
                .and_then(|o| u32::try_from(o).ok())
                .unwrap_or(UNKNOWN_OFFSET),
        }
    }

    /// Where the node's tag is, if it has one written apart from the value.
    fn of_tag(span: &Span) -> At {
        span.tag_span()
            .map_or_else(|| At::of(span), |tag| At::of(&tag))
    }

    fn node(self, value: NodeValue) -> Node {
        Node {
            line: self.line,
            column: self.column,
            length: self.length,
            offset: self.offset,
            value,
        }
    }

    fn diagnostic(self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.line, self.column, self.length.max(1), message)
    }
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A list or mapping being built; its children wait on [`Builder::pending`] from `start` on.
#[derive(Debug)]
struct Frame {
    at: At,
    anchor: usize,
    /// Values inside (this one included) and bytes of text inside, for alias budgets.
    nodes: usize,
    bytes: usize,
    is_map: bool,
    start: usize,
}

/// An anchored value, kept for the aliases that refer to it.
#[derive(Debug)]
struct Anchored {
    node: Node,
    nodes: usize,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Frame>,
    /// The finished children of every open collection, innermost last (keys and values
    /// alternate for mappings). Moving them out when a collection ends gives each one a
    /// `Vec` of exactly the right size: most mappings hold one or two pairs.
    pending: Vec<Node>,
    /// Indexed by the parser's anchor id (ids start at 1); `None` until the value is complete.
    anchors: Vec<Option<Anchored>>,
    root: Option<Node>,
    documents: usize,
    nodes: usize,
    alias_nodes: usize,
    alias_bytes: usize,
}

impl Builder {
    /// Takes one event; `Ok(true)` once the stream has ended.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<bool, Diagnostic> {
        match event {
            Event::StreamEnd => return Ok(true),
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(At::of(&span)
                        .diagnostic("the file holds more than one YAML document")
                        .with_help(
                            "a manifest is a single document: remove the `---` separators",
                        ));
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                let at = At::of(&span);
                self.count(at, 1)?;
                let bytes = value.len();
                let value = resolve_scalar(value, style, tag.as_deref(), At::of_tag(&span))?;
                self.complete(at.node(value), anchor, 1, bytes)?;
            }
            Event::SequenceStart(_, anchor, tag) => {
                self.open(&span, anchor, tag.as_deref(), false)?;
            }
            Event::MappingStart(_, anchor, tag) => {
                self.open(&span, anchor, tag.as_deref(), true)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop() {
                    let children = self.pending.drain(frame.start..);
                    let value = if frame.is_map {
                        let mut pairs = Vec::with_capacity(children.len() / 2);
                        let mut children = children;
                        while let (Some(key), Some(value)) = (children.next(), children.next()) {
                            pairs.push((key, value));
                        }
                        NodeValue::Map(pairs)
                    } else {
                        NodeValue::Seq(children.collect())
                    };
                    self.complete(frame.at.node(value), frame.anchor, frame.nodes, frame.bytes)?;
                }
            }
            Event::Alias(id) => {
                let at = At::of(&span);
                let Some(Some(anchored)) = self.anchors.get(id) else {
                    return Err(at
                        .diagnostic("this alias refers to a value that contains it")
                        .with_help(
                            "an alias (`*name`) can only repeat a value that ends before it",
                        ));
                };
                let (nodes, bytes) = (anchored.nodes, anchored.bytes);
                self.alias_nodes = self.alias_nodes.saturating_add(nodes);
                self.alias_bytes = self.alias_bytes.saturating_add(bytes);
                if self.alias_nodes > MAX_ALIAS_NODES || self.alias_bytes > MAX_ALIAS_BYTES {
                    return Err(at
                        .diagnostic(format!(
                            "YAML aliases (`*name`) expand to more than {MAX_ALIAS_NODES} values \
                             or {} MiB; the manifest is refused to protect memory",
                            MAX_ALIAS_BYTES / (1024 * 1024)
                        ))
                        .with_help(
                            "use `defaults.tokens` instead of repeating large anchored values",
                        ));
                }
                let mut node = anchored.node.clone();
                self.count(at, nodes)?;
                // Like the value it repeats, but found here.
                (node.line, node.column, node.length, node.offset) =
                    (at.line, at.column, at.length, at.offset);
                self.complete(node, 0, nodes, bytes)?;
            }
            _ => {}
        }
        Ok(false)
    }

    /// Counts `n` more values against [`MAX_NODES`].
    fn count(&mut self, at: At, n: usize) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(at
                .diagnostic(format!(
                    "the manifest holds more than {MAX_NODES} YAML values (counting expanded \
                     aliases)"
                ))
                .with_help("split it into several manifests"));
        }
        Ok(())
    }

    fn open(
        &mut self,
        span: &Span,
        anchor: usize,
        tag: Option<&Tag>,
        is_map: bool,
    ) -> Result<(), Diagnostic> {
        let at = At::of(span);
        let expected_tag = if is_map { "map" } else { "seq" };
        if let Some(tag) = tag
            && tag.core_suffix() != Some(expected_tag)
        {
            return Err(unsupported_tag(tag, At::of_tag(span)));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(too_deep(at));
        }
        self.count(at, 1)?;
        self.stack.push(Frame {
            at,
            anchor,
            nodes: 1,
            bytes: 0,
            is_map,
            start: self.pending.len(),
        });
        Ok(())
    }

    /// Puts a finished value into its parent (or makes it the root), remembering it if anchored.
    fn complete(
        &mut self,
        node: Node,
        anchor: usize,
        nodes: usize,
        bytes: usize,
    ) -> Result<(), Diagnostic> {
        if anchor != 0 {
            if self.anchors.len() <= anchor {
                self.anchors.resize_with(anchor + 1, || None);
            }
            if let Some(slot) = self.anchors.get_mut(anchor) {
                *slot = Some(Anchored {
                    node: node.clone(),
                    nodes,
                    bytes,
                });
            }
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(parent) => {
                parent.nodes = parent.nodes.saturating_add(nodes);
                parent.bytes = parent.bytes.saturating_add(bytes);
                self.pending.push(node);
            }
        }
        Ok(())
    }
}

fn too_deep(at: At) -> Diagnostic {
    at.diagnostic(format!(
        "the YAML is nested more than {MAX_DEPTH} levels deep"
    ))
    .with_help("a manifest needs only a few levels: accounts, an account, its tokens")
}

/// A tag as written (core tags in their short `!!` form).
fn written(tag: &Tag) -> String {
    match tag.core_suffix() {
        Some(suffix) => format!("!!{suffix}"),
        None => format!("{}{}", tag.original_handle(), tag.suffix()),
    }
}

fn unsupported_tag(tag: &Tag, at: At) -> Diagnostic {
    at.diagnostic(format!("unsupported YAML tag `{}` here", written(tag)))
        .with_help("remove the tag; a manifest needs none")
}

/// The value of a scalar, by its tag or, for plain scalars, the YAML 1.2 core schema. `at` is
/// where the tag is, for errors.
fn resolve_scalar(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Tag>,
    at: At,
) -> Result<NodeValue, Diagnostic> {
    let Some(tag) = tag else {
        return Ok(match style {
            ScalarStyle::Plain => resolve_plain(text),
            _ => NodeValue::Str(text.into_owned()),
        });
    };
    let invalid = |what: &str| at.diagnostic(format!("`!!{what}` value is not {what}"));
    // `!` alone is YAML's "non-specific" tag: a string.
    if written(tag) == "!" {
        return Ok(NodeValue::Str(text.into_owned()));
    }
    match tag.core_suffix() {
        Some("str") => Ok(NodeValue::Str(text.into_owned())),
        Some("int") => resolve_int(&text)
            .map(NodeValue::Int)
            .ok_or_else(|| invalid("an integer")),
        Some("float") => resolve_float(&text)
            .or_else(|| resolve_int(&text).map(saturating_f64))
            .map(NodeValue::Float)
            .ok_or_else(|| invalid("a float")),
        Some("bool") => resolve_bool(&text)
            .map(NodeValue::Bool)
            .ok_or_else(|| invalid("a boolean")),
        Some("null") if is_null(&text) => Ok(NodeValue::Null),
        Some("null") => Err(invalid("null")),
        _ => Err(unsupported_tag(tag, at)),
    }
}

fn resolve_plain(text: Cow<'_, str>) -> NodeValue {
    if is_null(&text) {
        return NodeValue::Null;
    }
    if let Some(b) = resolve_bool(&text) {
        return NodeValue::Bool(b);
    }
    // Only text starting like a number can be one.
    if text.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '-' | '+' | '.')) {
        if let Some(i) = resolve_int(&text) {
            return NodeValue::Int(i);
        }
        if let Some(f) = resolve_float(&text) {
            return NodeValue::Float(f);
        }
    }
    NodeValue::Str(text.into_owned())
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`, saturating outside `i128`.
fn resolve_int(text: &str) -> Option<i128> {
    let digits_in = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    let parse = |s: &str, radix: u32, negative: bool| {
        let magnitude = s
            .chars()
            .filter_map(|c| c.to_digit(radix))
            .try_fold(0i128, |acc, d| {
                acc.checked_mul(i128::from(radix))?
                    .checked_add(i128::from(d))
            });
        Some(match (magnitude, negative) {
            (Some(m), false) => m,
            (Some(m), true) => -m,
            (None, false) => i128::MAX,
            (None, true) => i128::MIN,
        })
    };
    if let Some(hex) = text.strip_prefix("0x") {
        return digits_in(hex, 16).then(|| parse(hex, 16, false)).flatten();
    }
    if let Some(octal) = text.strip_prefix("0o") {
        return digits_in(octal, 8)
            .then(|| parse(octal, 8, false))
            .flatten();
    }
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    digits_in(digits, 10)
        .then(|| parse(digits, 10, negative))
        .flatten()
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `[-+]?\.inf`, `\.nan`.
fn resolve_float(text: &str) -> Option<f64> {
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'-') => (-1.0, &text[1..]),
        Some(b'+') => (1.0, &text[1..]),
        _ => (1.0, text),
    };
    match rest {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if rest.len() == text.len() => return Some(f64::NAN),
        _ => {}
    }
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(whole)
        && fraction.is_none_or(digits)
        && (!whole.is_empty() || fraction.is_some_and(|f| !f.is_empty()));
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if mantissa_ok && exponent_ok {
        text.parse::<f64>().ok()
    } else {
        None
    }
}

// Only used for `!!float 12`: precision loss is what the author asked for.
#[allow(clippy::cast_precision_loss)]
fn saturating_f64(i: i128) -> f64 {
    i as f64
}

fn scan_error(e: &ScanError, text: &str) -> Diagnostic {
    let marker = e.marker();
    if matches!(e.kind(), ErrorKind::RecursionLimitExceeded) {
        // The scanner reads ahead, so it can hit its own nesting limit before we see the level.
        return too_deep(At {
            line: clamp(marker.line()),
            column: clamp(marker.col().saturating_add(1)),
            length: 1,
            offset: UNKNOWN_OFFSET,
        });
    }
    let info = e.info();
    let first = info.lines().next().unwrap_or("").trim();
    let message = if first.is_empty() {
        "invalid YAML".to_owned()
    } else {
        format!("invalid YAML: {first}")
    };
    let (line, column) = (clamp(marker.line()), clamp(marker.col().saturating_add(1)));
    // The scanner reports a tab at the start of the scalar it was reading (a line above):
    // point at the tab itself, the first one at or after that place.
    if first.contains("tab") {
        let skip = line_start(text, line) + char_offset(text, line, column);
        if let Some(rel) = text.get(skip..).and_then(|rest| rest.find('\t')) {
            let at = skip + rel;
            let tab_line = text[..at].matches('\n').count() + 1;
            let line_begin = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let tab_column = text[line_begin..at].chars().count() + 1;
            return Diagnostic::new(
                clamp(tab_line),
                clamp(tab_column),
                1,
                "invalid YAML: a tab character where YAML allows only spaces",
            )
            .with_help("indent with spaces: YAML does not allow tabs in indentation");
        }
    }
    let diagnostic = Diagnostic::new(line, column, 1, message);
    // `${VAR:-default}` in a flow sequence (`[a, b]`): its `{`, `}` and `:` are flow syntax.
    let source_line = text
        .lines()
        .nth(line.saturating_sub(1) as usize)
        .unwrap_or("");
    if first.contains("flow") && source_line.contains("${") {
        return diagnostic.with_help(
            "a `${…}` inside `[…]` or `{…}` must be quoted, as YAML reads its braces and `:` as flow syntax: write `[\"ci-${DEPLOY_ENV:-staging}\"]`",
        );
    }
    diagnostic
}

/// The byte offset where 1-based `line` begins (the end of the text past the last line).
fn line_start(text: &str, line: u32) -> usize {
    if line <= 1 {
        return 0;
    }
    text.match_indices('\n')
        .nth(line as usize - 2)
        .map_or(text.len(), |(i, _)| i + 1)
}

/// The byte offset, within 1-based `line`, of 1-based character `column`.
fn char_offset(text: &str, line: u32, column: u32) -> usize {
    let start = line_start(text, line);
    let rest = text.get(start..).unwrap_or("");
    rest.char_indices()
        .nth(column.saturating_sub(1) as usize)
        .map_or(rest.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn map(node: &Node) -> &[(Node, Node)] {
        match &node.value {
            NodeValue::Map(pairs) => pairs,
            other => panic!("not a map: {other:?}"),
        }
    }

    fn seq(node: &Node) -> &[Node] {
        match &node.value {
            NodeValue::Seq(items) => items,
            other => panic!("not a list: {other:?}"),
        }
    }

    #[test]
    fn a_tab_is_reported_where_it_is() {
        let d = parse("version: 1\naccounts:\n  - id: 1\n\ttokens: [ci]\n").unwrap_err();
        assert_eq!((d.line, d.column), (4, 1), "{d:?}");
        assert!(d.message.contains("tab"), "{}", d.message);
        assert!(d.help.unwrap().contains("spaces"));
    }

    #[test]
    fn an_unquoted_variable_in_a_flow_sequence_gets_the_hint_to_quote_it() {
        let d =
            parse("accounts:\n  - id: 1\n    tokens: [ci-${DEPLOY_ENV:-staging}]\n").unwrap_err();
        assert_eq!(d.line, 3);
        assert!(
            d.help.as_deref().unwrap_or("").contains("must be quoted"),
            "{d:?}"
        );
        // Another flow error without `${` gets no such hint.
        let d = parse("tokens: [a b: c: d]\n").unwrap_err();
        assert!(!d.help.as_deref().unwrap_or("").contains("${"), "{d:?}");
    }

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let root = parse("# c\nkey: value\né: \"q\"\nlist: [1, x]\nitems:\n  - a: 1\n").unwrap();
        let pairs = map(&root);
        assert_eq!((root.line, root.column), (2, 1));
        let (k, v) = &pairs[0];
        assert_eq!((k.line, k.column, k.length), (2, 1, 3));
        assert_eq!((v.line, v.column, v.length), (2, 6, 5));
        let (k, v) = &pairs[1];
        assert_eq!((k.line, k.column), (3, 1));
        // A quoted scalar's span includes its quotes; columns count characters, not bytes.
        assert_eq!((v.line, v.column, v.length), (3, 4, 3));
        assert_eq!(v.value, NodeValue::Str("q".into()));
        let items = seq(&pairs[2].1);
        assert_eq!((items[1].line, items[1].column), (4, 11));
        let account = &seq(&pairs[3].1)[0];
        assert_eq!((account.line, account.column), (6, 5));
        // Byte offsets: `é` takes two bytes.
        assert_eq!(pairs[1].1.offset, 19);
        assert_eq!(items[1].offset, 33);
    }

    #[test]
    fn scalars_follow_the_yaml_1_2_core_schema() {
        let root = parse(
            "[1, -2, +3, 0x1F, 0o17, 1.5, -.5, 1e3, .inf, -.Inf, true, False, yes, on, ~, null, \
             '3', \"4\", 1_000, 0755, 12abc, !!str 5, !!int '6', !!float 7, ! 8, 170141183460469231731687303715884105728, .nan]",
        )
        .unwrap();
        let values: Vec<_> = seq(&root).iter().map(|n| n.value.clone()).collect();
        use NodeValue::*;
        let s = |x: &str| Str(x.into());
        assert_eq!(
            values[..10],
            [
                Int(1),
                Int(-2),
                Int(3),
                Int(31),
                Int(15),
                Float(1.5),
                Float(-0.5),
                Float(1000.0),
                Float(f64::INFINITY),
                Float(f64::NEG_INFINITY)
            ]
        );
        assert_eq!(
            values[10..26],
            [
                Bool(true),
                Bool(false),
                s("yes"),
                s("on"),
                Null,
                Null,
                s("3"),
                s("4"),
                s("1_000"),
                Int(755),
                s("12abc"),
                s("5"),
                Int(6),
                Float(7.0),
                s("8"),
                Int(i128::MAX),
            ]
        );
        assert!(matches!(values[26], Float(f) if f.is_nan()));
    }

    #[test]
    fn bad_tags_are_located() {
        let d = parse("a: !!int x\n").unwrap_err();
        assert_eq!((d.line, d.column), (1, 4));
        assert!(d.message.contains("not an integer"), "{}", d.message);
        let d = parse("a: !secret x\n").unwrap_err();
        assert!(d.message.contains("`!secret`"), "{}", d.message);
        let d = parse("a: !!map [1]\n").unwrap_err();
        assert!(d.message.contains("`!!map`"), "{}", d.message);
    }

    #[test]
    fn duplicate_keys_are_kept() {
        let root = parse("a: 1\na: 2\n").unwrap();
        assert_eq!(map(&root).len(), 2);
    }

    #[test]
    fn empty_streams_are_null() {
        for text in ["", "# only a comment\n", "---\n", "--- # c\n...\n"] {
            assert_eq!(parse(text).unwrap().value, NodeValue::Null, "{text:?}");
        }
    }

    #[test]
    fn syntax_errors_are_located() {
        let d = parse("a: 1\nb: \"open\n").unwrap_err();
        assert!(d.message.starts_with("invalid YAML: "), "{}", d.message);
        assert_eq!(d.line, 2, "{d:?}");
        let d = parse("version: 1\naccounts:\n  - id: 1\n   bad: [x\n").unwrap_err();
        assert_eq!((d.line, d.column), (4, 4), "{d:?}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("a: {}{}", "[".repeat(1000), "]".repeat(1000));
        let d = parse(&text).unwrap_err();
        assert!(d.message.contains("nested more than 64"), "{}", d.message);
        // At the 65th level: `a: ` and 64 brackets before it.
        assert_eq!((d.line, d.column), (1, 68));
        let ok = format!("a: {}{}", "[".repeat(63), "]".repeat(63));
        assert!(parse(&ok).is_ok());
        let mut block = String::new();
        for i in 0..100 {
            block.push_str(&format!("{}k:\n", "  ".repeat(i)));
        }
        let d = parse(&block).unwrap_err();
        assert!(d.message.contains("nested more than 64"), "{}", d.message);
        assert_eq!(d.line, 65, "{d:?}");
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        let mut prev = 'a';
        for c in 'b'..='i' {
            let refs = vec![format!("*{prev}"); 9].join(", ");
            text.push_str(&format!("{c}: &{c} [{refs}]\n"));
            prev = c;
        }
        let d = parse(&text).unwrap_err();
        assert!(d.message.contains("aliases"), "{}", d.message);
        let long = format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "x".repeat(1 << 20),
            vec!["*a"; 20].join(", ")
        );
        assert!(parse(&long).unwrap_err().message.contains("aliases"));
    }

    #[test]
    fn aliases_repeat_values_at_their_own_place() {
        let mut text = String::from("t: &t [a, b]\nl:\n");
        for _ in 0..5_000 {
            text.push_str("  - *t\n");
        }
        let root = parse(&text).unwrap();
        let list = seq(&map(&root)[1].1);
        assert_eq!(list.len(), 5_000);
        assert_eq!((list[0].line, list[0].column), (3, 5));
        assert_eq!(seq(&list[0]).len(), 2);
        let d = parse("a: &a [1, *a]\n").unwrap_err();
        assert!(d.message.contains("contains it"), "{}", d.message);
        let d = parse("a: *nope\n").unwrap_err();
        assert_eq!((d.line, d.column), (1, 4), "{d:?}");
    }

    #[test]
    fn several_documents_are_refused() {
        let d = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(d.message.contains("more than one YAML document"));
        assert_eq!((d.line, d.column), (2, 1));
    }
}
