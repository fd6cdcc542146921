//! YAML (and JSON, which is YAML) into `serde_json::Value`, with line numbers.
//!
//! Scalars resolve as Kubernetes' YAML reader does (YAML 1.1 booleans such as `yes`/`on`,
//! leading-zero octals); quoted scalars are always strings. Duplicate keys are errors, as in
//! `kubectl`, and so are nesting deeper than `MAX_DEPTH` and aliases that copy more than
//! `MAX_ALIAS_NODES` nodes (hostile input must not exhaust the stack or memory). Line numbers are
//! 1-based and count LF, CRLF and a lone CR as line breaks, as the scanner does. Parsing keeps
//! no position table: `locate` (in `locate.rs`) re-reads a document when findings need their
//! lines, which keeps the common (clean) path cheap.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::{Map, Number, Value};

mod locate;

pub use locate::{locate, locate_all};

/// One document of a YAML stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// The document's content (`Null` for an empty document).
    pub value: Value,
    /// Line of the document's first token (its `---` or first content).
    pub line: usize,
}

/// A YAML syntax or structure error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct YamlError {
    /// Line of the offending token (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses every document of `text`. Documents before an error are returned with it.
pub fn parse_documents(text: &str) -> (Vec<Document>, Option<YamlError>) {
    let mut builder = Builder::default();
    let mut docs = Vec::new();
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) => return (docs, Some(within(scan_error(&e), text))),
        };
        match builder.event(event, span) {
            Ok(Some(doc)) => docs.push(doc),
            Ok(None) => {}
            Err(e) => return (docs, Some(within(e, text))),
        }
    }
    (docs, None)
}

/// `e` with its line on the text's last line at most: at the end of a text that does not end
/// in a newline, the scanner counts one line more than there is.
fn within(mut e: YamlError, text: &str) -> YamlError {
    e.line = e.line.min(line_count(text));
    e
}

/// The number of lines of `text` as YAML counts them (an empty text has one).
fn line_count(text: &str) -> usize {
    let breaks = line_starts(text).count();
    if line_starts(text).last() == Some(text.len()) { breaks.max(1) } else { breaks + 1 }
}

/// Where each line after the first starts. Line breaks are LF, CRLF and a lone CR, as the YAML
/// scanner counts them.
fn line_starts(text: &str) -> impl Iterator<Item = usize> + '_ {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().filter_map(move |(i, b)| match b {
        b'\n' => Some(i + 1),
        b'\r' if bytes.get(i + 1) != Some(&b'\n') => Some(i + 1),
        _ => None,
    })
}

/// Parses a text that must hold exactly one document (config files).
pub fn parse_single(text: &str) -> Result<Document, YamlError> {
    let (mut docs, err) = parse_documents(text);
    if let Some(e) = err {
        return Err(e);
    }
    match docs.len() {
        0 => Ok(Document { value: Value::Null, line: 1 }),
        1 => Ok(docs.remove(0)),
        _ => Err(YamlError {
            line: docs[1].line,
            message: "expected a single YAML document, found another one here".into(),
        }),
    }
}

fn scan_error(e: &ScanError) -> YamlError {
    YamlError { line: e.marker().line(), message: e.info().to_owned() }
}

// === impl Builder ===

/// Deepest nesting accepted: as deep as the webhook's JSON parser goes (serde_json's 128), far
/// beyond any Kubernetes object, and shallow enough for code that walks values recursively
/// (dropping a `Value` does) to stay within a thread's stack.
pub const MAX_DEPTH: usize = 128;
/// Most nodes that aliases may copy into one document: a few lines of nested aliases
/// otherwise expand to gigabytes ("billion laughs").
pub const MAX_ALIAS_NODES: usize = 100_000;

/// The extent of a value: its nodes and its nesting depth (0 for a scalar).
#[derive(Clone, Copy, Default)]
struct Size {
    nodes: usize,
    depth: usize,
}

enum Frame {
    Seq(Vec<Value>, usize),
    /// Entries, pending key with its line, merged (`<<`) entries, anchor.
    Map(Map<String, Value>, Option<(String, usize)>, Map<String, Value>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// The size of the children of each open collection so far.
    sizes: Vec<Size>,
    /// Anchored values by anchor id; a redefined anchor replaces the earlier one.
    anchors: HashMap<usize, (Value, Size)>,
    /// Nodes copied by aliases in the current document.
    alias_nodes: usize,
    doc_line: usize,
    root: Option<Value>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<Option<Document>, YamlError> {
        let line = span.start.line();
        match event {
            Event::DocumentStart(_) => {
                self.doc_line = line;
                self.root = None;
                self.anchors.clear();
                self.alias_nodes = 0;
            }
            Event::DocumentEnd => {
                let value = self.root.take().unwrap_or(Value::Null);
                return Ok(Some(Document { value, line: self.doc_line }));
            }
            Event::SequenceStart(anchor, _) => self.open(Frame::Seq(Vec::new(), anchor), line)?,
            Event::MappingStart(anchor, _) => self.open(Frame::Map(Map::new(), None, Map::new(), anchor), line)?,
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, anchor)) = self.stack.pop() {
                    let size = self.close();
                    self.value(Value::Array(items), size, anchor, line)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(mut map, _, merged, anchor)) = self.stack.pop() {
                    for (k, v) in merged {
                        map.entry(k).or_insert(v);
                    }
                    let size = self.close();
                    self.value(Value::Object(map), size, anchor, line)?;
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(&text, style, tag.as_deref());
                self.value(value, Size { nodes: 1, depth: 0 }, anchor, line)?;
            }
            Event::Alias(id) => {
                let (value, size) = self
                    .anchors
                    .get(&id)
                    .ok_or_else(|| YamlError { line, message: "alias to an unknown anchor".into() })?;
                let size = *size;
                self.alias_nodes += size.nodes;
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(YamlError {
                        line,
                        message: format!(
                            "aliases copy more than {MAX_ALIAS_NODES} nodes into this document; write the values out instead"
                        ),
                    });
                }
                if self.stack.len() + size.depth > MAX_DEPTH {
                    return Err(too_deep(line));
                }
                let value = value.clone();
                self.value(value, size, 0, line)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
        Ok(None)
    }

    fn open(&mut self, frame: Frame, line: usize) -> Result<(), YamlError> {
        if self.stack.len() == MAX_DEPTH {
            return Err(too_deep(line));
        }
        self.stack.push(frame);
        self.sizes.push(Size::default());
        Ok(())
    }

    /// The size of the collection just popped from `stack`.
    fn close(&mut self) -> Size {
        let children = self.sizes.pop().unwrap_or_default();
        Size { nodes: children.nodes + 1, depth: children.depth + 1 }
    }

    fn value(&mut self, value: Value, size: Size, anchor: usize, line: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, (value.clone(), size));
        }
        if let Some(parent) = self.sizes.last_mut() {
            parent.nodes += size.nodes;
            parent.depth = parent.depth.max(size.depth);
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq(items, _)) => items.push(value),
            Some(Frame::Map(map, pending, merged, _)) => match pending.take() {
                None => *pending = Some((key_string(value, line)?, line)),
                Some((key, _)) if key == "<<" => merge_into(merged, value, line)?,
                Some((key, key_line)) => {
                    if map.contains_key(&key) {
                        return Err(YamlError {
                            line: key_line,
                            message: format!("mapping key {key:?} is defined twice; remove one of them"),
                        });
                    }
                    map.insert(key, value);
                }
            },
        }
        Ok(())
    }
}

fn too_deep(line: usize) -> YamlError {
    YamlError {
        line,
        message: format!("the YAML nests deeper than {MAX_DEPTH} levels; no Kubernetes object is this deep"),
    }
}

fn key_string(value: Value, line: usize) -> Result<String, YamlError> {
    match value {
        Value::String(s) => Ok(s),
        Value::Null => Ok("null".into()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Array(_) | Value::Object(_) => Err(YamlError {
            line,
            message: "a mapping key must be a scalar; Kubernetes objects have only string keys".into(),
        }),
    }
}

/// YAML merge key (`<<: *base`): collected aside; the mapping's own keys win at its end.
fn merge_into(map: &mut Map<String, Value>, value: Value, line: usize) -> Result<(), YamlError> {
    let sources = match value {
        Value::Object(m) => vec![m],
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Object(m) => Ok(m),
                _ => Err(YamlError { line, message: "merge key `<<` takes mappings only".into() }),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(YamlError { line, message: "merge key `<<` takes a mapping".into() }),
    };
    for source in sources {
        for (k, v) in source {
            map.entry(k).or_insert(v);
        }
    }
    Ok(())
}

fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag.filter(|t| t.is_yaml_core_schema()) {
        return match tag.suffix.as_str() {
            "str" | "binary" | "timestamp" => Value::String(text.to_string()),
            "null" => Value::Null,
            _ => resolve_plain(text),
        };
    }
    if style == ScalarStyle::Plain && tag.is_none() { resolve_plain(text) } else { Value::String(text.to_string()) }
}

fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            return Value::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Value::String(s.to_owned());
    }
    parse_int(s).map(Value::from).or_else(|| parse_float(s)).unwrap_or_else(|| Value::String(s.to_owned()))
}

fn parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let body = body.replace('_', "");
    let magnitude = if let Some(hex) = body.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = body.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if let Some(oct) = body.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        body.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -magnitude } else { magnitude })
}

fn parse_float(s: &str) -> Option<Value> {
    let body = s.trim_start_matches(['-', '+']);
    let digits = body.bytes().filter(u8::is_ascii_digit).count();
    let valid =
        digits > 0 && body.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+' | b'_'));
    if !valid {
        return None;
    }
    let f: f64 = s.replace('_', "").parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_multi_document_streams_with_start_lines() {
        let text = "a: 1\n---\n# comment\nb: [x, 'y']\n---\n";
        let (docs, err) = parse_documents(text);
        assert_eq!(err, None);
        assert_eq!(docs[0], Document { value: json!({"a": 1}), line: 1 });
        assert_eq!(docs[1].value, json!({"b": ["x", "y"]}));
        assert_eq!(docs[1].line, 2);
        assert_eq!(docs[2].value, Value::Null);
    }

    #[test]
    fn resolves_scalars_like_kubernetes() {
        let (docs, _) = parse_documents(
            "a: yes\nb: 'yes'\nc: 010\nd: 1.5\ne: ~\nf: 0x1F\ng: 1e3\nh: v1.2\ni: -7\nj: \"80\"\nk: .inf\n",
        );
        assert_eq!(
            docs[0].value,
            json!({"a": true, "b": "yes", "c": 8, "d": 1.5, "e": null, "f": 31, "g": 1000.0,
                   "h": "v1.2", "i": -7, "j": "80", "k": ".inf"})
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let (docs, err) = parse_documents("base: &b {a: 1, c: 2}\nuse:\n  <<: *b\n  c: 3\nlist: [*b]\n");
        assert_eq!(err, None);
        assert_eq!(
            docs[0].value,
            json!({"base": {"a": 1, "c": 2}, "use": {"c": 3, "a": 1}, "list": [{"a": 1, "c": 2}]})
        );
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_name_the_line() {
        let (_, err) = parse_documents("a: 1\nb: 2\na: 3\n");
        assert_eq!(err.map(|e| e.line), Some(3));
        let (docs, err) = parse_documents("ok: 1\n---\nbad: [1, 2\nnext: 3\n");
        assert_eq!(docs.len(), 1, "documents before the error are kept");
        assert!(err.is_some());
    }

    #[test]
    fn errors_at_the_end_point_at_the_last_line() {
        // Found by fuzzing (fuzz/regressions/): without a final newline the scanner reported
        // the line after the last one.
        for (text, line) in [("a: b\nad", 2), ("rules:\n  x: off\nnop", 3), ("a: b\nad\n", 2)] {
            let (_, err) = parse_documents(text);
            assert_eq!(err.map(|e| e.line), Some(line), "{text:?}");
        }
        let (_, err) = parse_documents("a: 'x");
        assert_eq!(err.map(|e| e.line), Some(1));
        // A lone CR breaks lines as LF and CRLF do (fuzz/regressions/rule_config/).
        for text in ["a: b\rc: d\re: [", "a: b\r\nc: d\r\ne: [", "a: b\nc: d\ne: [\n"] {
            assert_eq!((parse_documents(text).1.map(|e| e.line), line_count(text)), (Some(3), 3), "{text:?}");
        }
        assert_eq!(
            [line_count(""), line_count("a"), line_count("\n"), line_count("a\n\n"), line_count("a\r\rb")],
            [1, 1, 1, 2, 3]
        );
    }

    #[test]
    fn nesting_is_bounded() {
        // Deeper values overflowed the stack when dropped (fuzz/regressions/check_yaml/).
        let deep = |n: usize| format!("{}x\n", "- ".repeat(n));
        let (docs, err) = parse_documents(&deep(MAX_DEPTH));
        assert_eq!((docs.len(), err), (1, None));
        for n in [MAX_DEPTH + 1, 20_000] {
            let (_, err) = parse_documents(&deep(n));
            assert!(err.is_some_and(|e| e.line == 1 && e.message.contains("deeper than 128")), "depth {n}");
        }
        // An alias counts with the depth it lands at.
        let flow = |n: usize, inner: &str| format!("{}{inner}{}", "[".repeat(n), "]".repeat(n));
        let text = format!("a: &a {}\nb: {}\n", flow(100, "x"), flow(27, "*a"));
        assert_eq!(parse_documents(&text).1, None);
        let text = format!("a: &a {}\nb: {}\n", flow(100, "x"), flow(28, "*a"));
        assert_eq!(parse_documents(&text).1.map(|e| e.line), Some(2));
    }

    #[test]
    fn alias_expansion_is_bounded() {
        // Ten levels of ten aliases: 10^9 nodes from 450 bytes (fuzz/regressions/*/alias-bomb).
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let aliases = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{aliases}]\n"));
        }
        let (_, err) = parse_documents(&text);
        let err = err.expect("the expansion is refused");
        assert_eq!(err.line, 5, "{err}");
        assert!(err.message.contains("aliases copy more than"), "{err}");
        // Each document has its own budget, and a redefined anchor replaces the earlier one.
        let (docs, err) = parse_documents("a: &x 1\nb: &x 2\nc: *x\n---\nd: &x [3]\ne: *x\n");
        assert_eq!(err, None);
        assert_eq!(docs[0].value, json!({"a": 1, "b": 2, "c": 2}));
        assert_eq!(docs[1].value, json!({"d": [3], "e": [3]}));
    }

    #[test]
    fn json_is_accepted() {
        let (docs, err) = parse_documents("{\"apiVersion\": \"v1\", \"items\": [1, {\"a\": null}]}");
        assert_eq!(err, None);
        assert_eq!(docs[0].value, json!({"apiVersion": "v1", "items": [1, {"a": null}]}));
    }
}
