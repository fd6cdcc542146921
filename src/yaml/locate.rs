//! Finding the line of a field path in a YAML document, for reports: `locate` for one path,
//! `locate_all` for all of a document's findings in one read.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, Span};

use super::line_starts;
use crate::policy::path::Segment;

/// The line of the node at `path` in the document starting at `doc_line`. When the path does
/// not exist, the line of its deepest existing ancestor; the document's line at worst.
pub fn locate(text: &str, doc_line: usize, path: &[Segment]) -> usize {
    locate_all(text, doc_line, &[path])[0]
}

/// The lines of several paths in the document starting at `doc_line`, each as `locate` gives
/// it, from one read of the document (`check` locates all of a document's findings at once).
pub fn locate_all(text: &str, doc_line: usize, paths: &[&[Segment]]) -> Vec<usize> {
    if paths.is_empty() {
        return Vec::new();
    }
    let mut trie = Trie::default();
    paths.iter().for_each(|p| trie.insert(p));
    let mut walker = Walker { trie: &mut trie, stack: Vec::new() };
    let mut parser = Parser::new_from_str(&text[line_offset(text, doc_line)..]);
    while let Some(Ok((event, span))) = parser.next_event() {
        if walker.event(&event, span) {
            break;
        }
    }
    paths.iter().map(|p| doc_line + trie.line(p) - 1).collect()
}

fn line_offset(text: &str, line: usize) -> usize {
    if line <= 1 {
        return 0;
    }
    line_starts(text).nth(line - 2).unwrap_or(text.len())
}

// === impl Walker ===

/// The paths being located, merged by common prefix; node 0 is the document's root.
struct Trie {
    nodes: Vec<TrieNode>,
}

#[derive(Default)]
struct TrieNode {
    keys: HashMap<Box<str>, usize>,
    indexes: HashMap<usize, usize>,
    /// Line of the first event of this node (for a map value: of its key), once seen.
    line: Option<usize>,
}

impl Default for Trie {
    fn default() -> Self {
        Self { nodes: vec![TrieNode::default()] }
    }
}

impl Trie {
    fn insert(&mut self, path: &[Segment]) {
        let mut node = 0;
        for segment in path {
            let next = self.nodes.len();
            let child = match segment {
                Segment::Key(k) => *self.nodes[node].keys.entry(k.as_ref().into()).or_insert(next),
                Segment::Index(i) => *self.nodes[node].indexes.entry(*i).or_insert(next),
            };
            if child == next {
                self.nodes.push(TrieNode::default());
            }
            node = child;
        }
    }

    fn child(&self, node: usize, segment: &Segment) -> Option<usize> {
        match segment {
            Segment::Key(k) => self.nodes[node].keys.get(k.as_ref()).copied(),
            Segment::Index(i) => self.nodes[node].indexes.get(i).copied(),
        }
    }

    /// The (1-based) line of the deepest node of `path` that was seen; the root's at worst.
    fn line(&self, path: &[Segment]) -> usize {
        let (mut node, mut line) = (0, self.nodes[0].line.unwrap_or(1));
        for segment in path {
            match self.child(node, segment).and_then(|c| Some((c, self.nodes[c].line?))) {
                Some((c, l)) => (node, line) = (c, l),
                None => break,
            }
        }
        line
    }
}

/// Walks one document's events, recording the line of every trie node it meets.
struct Walker<'t> {
    trie: &'t mut Trie,
    /// Open collections, outermost first.
    stack: Vec<Open>,
}

struct Open {
    is_map: bool,
    index: usize,
    key: Option<String>,
    /// This collection's trie node, when it lies on a located path.
    node: Option<usize>,
}

impl Walker<'_> {
    /// Returns true once the document is finished.
    fn event(&mut self, event: &Event<'_>, span: Span) -> bool {
        let line = span.start.line();
        match event {
            Event::DocumentEnd => return true,
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let node = self.enter(line);
                let is_map = matches!(event, Event::MappingStart(..));
                self.stack.push(Open { is_map, index: 0, key: None, node });
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
                    self.enter(line);
                } else {
                    self.enter(line);
                    self.advance();
                }
            }
            Event::Alias(_) => {
                self.enter(line);
                self.advance();
            }
            _ => {}
        }
        false
    }

    /// The trie node of the node starting now, recording its line if it is the first seen.
    fn enter(&mut self, line: usize) -> Option<usize> {
        let node = match self.stack.last() {
            None => 0,
            Some(level) => {
                let parent = level.node?;
                let node = &self.trie.nodes[parent];
                match (level.is_map, &level.key) {
                    (true, Some(key)) => node.keys.get(key.as_str()).copied()?,
                    (false, _) => node.indexes.get(&level.index).copied()?,
                    (true, None) => return None,
                }
            }
        };
        self.trie.nodes[node].line.get_or_insert(line);
        Some(node)
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
    use super::*;
    use crate::policy::path::FieldPath;
    use crate::yaml::parse_documents;

    #[test]
    fn locate_counts_lines_as_the_parser_does() {
        for text in ["kind: A\r---\rkind: B\rspec:\r  x: 1\r", "kind: A\r\n---\r\nkind: B\r\nspec:\r\n  x: 1\r\n"] {
            let (docs, _) = parse_documents(text);
            assert_eq!(locate(text, docs[1].line, FieldPath::parse("spec.x").segments()), 5, "{text:?}");
        }
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

    #[test]
    fn locate_all_locates_every_path_in_one_read() {
        let text = "kind: A\n---\nkind: B\nspec:\n  env:\n  - name: X\n    value: a\n  - name: Y\n    value: b\n";
        let (docs, _) = parse_documents(text);
        let paths = [
            FieldPath::parse("spec.env").index(1).key("value"),
            FieldPath::parse("spec.env").index(0).key("name"),
            FieldPath::parse("spec"),
            FieldPath::parse("spec.env").index(1).key("valueFrom"),
            FieldPath::parse("spec.missing.deeper"),
            FieldPath::parse("kind"),
            FieldPath::root(),
            FieldPath::parse("spec.env").index(1).key("value"),
        ];
        let segments: Vec<&[Segment]> = paths.iter().map(FieldPath::segments).collect();
        assert_eq!(locate_all(text, docs[1].line, &segments), [9, 6, 4, 8, 4, 3, 3, 9]);
        assert_eq!(locate_all(text, docs[1].line, &[]), Vec::<usize>::new());
    }
}
