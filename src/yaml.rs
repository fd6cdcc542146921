//! YAML (and JSON, which is YAML) into `serde_json::Value`, with line numbers.
//!
//! Scalars resolve as Kubernetes' YAML reader does (YAML 1.1 booleans such as `yes`/`on`,
//! leading-zero octals); quoted scalars are always strings. Duplicate keys are errors, as in
//! `kubectl`. Line numbers are 1-based. Parsing keeps no position table: `locate` re-reads one
//! document when a finding needs its line, which keeps the common (clean) path cheap.

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::{Map, Number, Value};

use crate::policy::path::Segment;

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
            Some(Err(e)) => return (docs, Some(scan_error(&e))),
        };
        match builder.event(event, span) {
            Ok(Some(doc)) => docs.push(doc),
            Ok(None) => {}
            Err(e) => return (docs, Some(e)),
        }
    }
    (docs, None)
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

/// The line of the node at `path` in the document starting at `doc_line`. When the path does
/// not exist, the line of its deepest existing ancestor; the document's line at worst.
pub fn locate(text: &str, doc_line: usize, path: &[Segment]) -> usize {
    let offset = line_offset(text, doc_line);
    let mut finder = Finder { target: path, stack: Vec::new(), best: (0, 1) };
    let mut parser = Parser::new_from_str(&text[offset..]);
    while let Some(Ok((event, span))) = parser.next_event() {
        if finder.event(&event, span) {
            break;
        }
    }
    doc_line + finder.best.1 - 1
}

fn line_offset(text: &str, line: usize) -> usize {
    if line <= 1 {
        return 0;
    }
    text.match_indices('\n').nth(line - 2).map_or(text.len(), |(i, _)| i + 1)
}

fn scan_error(e: &ScanError) -> YamlError {
    YamlError { line: e.marker().line(), message: e.info().to_owned() }
}

// === impl Builder ===

enum Frame {
    Seq(Vec<Value>, usize),
    /// Entries, pending key with its line, merged (`<<`) entries, anchor.
    Map(Map<String, Value>, Option<(String, usize)>, Map<String, Value>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: Vec<(usize, Value)>,
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
            }
            Event::DocumentEnd => {
                let value = self.root.take().unwrap_or(Value::Null);
                return Ok(Some(Document { value, line: self.doc_line }));
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(Vec::new(), anchor)),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(Map::new(), None, Map::new(), anchor)),
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, anchor)) = self.stack.pop() {
                    self.value(Value::Array(items), anchor, line)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(mut map, _, merged, anchor)) = self.stack.pop() {
                    for (k, v) in merged {
                        map.entry(k).or_insert(v);
                    }
                    self.value(Value::Object(map), anchor, line)?;
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(&text, style, tag.as_deref());
                self.value(value, anchor, line)?;
            }
            Event::Alias(id) => {
                let value = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| YamlError { line, message: "alias to an unknown anchor".into() })?;
                self.value(value, 0, line)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
        Ok(None)
    }

    fn value(&mut self, value: Value, anchor: usize, line: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.push((anchor, value.clone()));
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

// === impl Finder ===

/// Walks one document's events to the node at `target`, remembering the deepest match.
struct Finder<'p> {
    target: &'p [Segment],
    /// Open collections, outermost first.
    stack: Vec<Level>,
    /// (depth matched, line).
    best: (usize, usize),
}

struct Level {
    is_map: bool,
    index: usize,
    key: Option<String>,
    /// True while every segment above this collection matched the target.
    on_path: bool,
}

impl Finder<'_> {
    /// Returns true once the document is finished.
    fn event(&mut self, event: &Event<'_>, span: Span) -> bool {
        let line = span.start.line();
        match event {
            Event::DocumentEnd => return true,
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let on_path = self.node_on_path(line);
                let is_map = matches!(event, Event::MappingStart(..));
                self.stack.push(Level { is_map, index: 0, key: None, on_path });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.advance();
            }
            Event::Scalar(text, ..) => {
                let is_key = self.stack.last().is_some_and(|l| l.is_map && l.key.is_none());
                if is_key {
                    if let Some(level) = self.stack.last_mut() {
                        level.key = Some(text.to_string());
                    }
                    // A key's line is where a finding about its value should point.
                    self.node_on_path(line);
                } else {
                    self.node_on_path(line);
                    self.advance();
                }
            }
            Event::Alias(_) => {
                self.node_on_path(line);
                self.advance();
            }
            _ => {}
        }
        false
    }

    /// Whether the node starting now sits on the target path; records its line if so.
    fn node_on_path(&mut self, line: usize) -> bool {
        let depth = self.stack.len();
        let Some(level) = self.stack.last() else {
            self.best = (0, line);
            return true;
        };
        if !level.on_path || depth > self.target.len() {
            return false;
        }
        let matches = match (&self.target[depth - 1], level.is_map) {
            (Segment::Key(k), true) => level.key.as_deref() == Some(k.as_ref()),
            (Segment::Index(i), false) => level.index == *i,
            _ => false,
        };
        if matches && depth > self.best.0 {
            self.best = (depth, line);
        }
        matches
    }

    fn advance(&mut self) {
        if let Some(level) = self.stack.last_mut() {
            if level.is_map {
                level.key = None;
            } else {
                level.index += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::policy::path::FieldPath;

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
    fn json_is_accepted() {
        let (docs, err) = parse_documents("{\"apiVersion\": \"v1\", \"items\": [1, {\"a\": null}]}");
        assert_eq!(err, None);
        assert_eq!(docs[0].value, json!({"apiVersion": "v1", "items": [1, {"a": null}]}));
    }

    #[test]
    fn locate_points_at_keys_and_falls_back_to_ancestors() {
        let text = "kind: A\n---\nkind: B\nspec:\n  env:\n  - name: X\n    value: a\n  - name: Y\n    value: b\n";
        let (docs, _) = parse_documents(text);
        let at = |p: FieldPath| locate(text, docs[1].line, p.segments());
        assert_eq!(at(FieldPath::parse("spec.env").index(1).key("value")), 9);
        assert_eq!(at(FieldPath::parse("spec.env").index(0).key("name")), 6);
        assert_eq!(at(FieldPath::parse("spec")), 4);
        // Missing leaf: the nearest existing ancestor.
        assert_eq!(at(FieldPath::parse("spec.env").index(1).key("valueFrom")), 8);
        assert_eq!(at(FieldPath::parse("spec.missing.deeper")), 4);
        assert_eq!(at(FieldPath::parse("kind")), 3);
    }
}
