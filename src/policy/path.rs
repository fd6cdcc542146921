//! Field paths: where in an object a finding points.
//!
//! Rendered two ways: `spec.extraEnv[2].name` for people and Kubernetes `causes[].field`,
//! and as an RFC 6901 JSON pointer (`/spec/extraEnv/2/name`) to find the YAML line.

use std::borrow::Cow;
use std::fmt;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// A map key: borrowed for the field names rules spell out, owned for keys read from objects.
    Key(Cow<'static, str>),
    /// A list index.
    Index(usize),
}

/// A path from the object root to a field.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// The object root.
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses a dotted path of plain keys (`spec.instanceRef.name`).
    pub fn parse(dotted: &str) -> Self {
        Self(dotted.split('.').filter(|s| !s.is_empty()).map(|s| Segment::Key(Cow::Owned(s.to_owned()))).collect())
    }

    /// An empty path with room for `segments` segments (`fp!` builds paths in place with it).
    pub fn with_capacity(segments: usize) -> Self {
        Self(Vec::with_capacity(segments))
    }

    /// This path extended by a map key.
    #[must_use]
    pub fn key(&self, key: impl Into<Cow<'static, str>>) -> Self {
        self.extended(Segment::Key(key.into()))
    }

    /// This path extended by a list index.
    #[must_use]
    pub fn index(&self, i: usize) -> Self {
        self.extended(Segment::Index(i))
    }

    /// A copy with one more segment, and room for two more: one allocation.
    fn extended(&self, segment: Segment) -> Self {
        let mut segments = Vec::with_capacity(self.0.len() + 3);
        segments.extend_from_slice(&self.0);
        segments.push(segment);
        Self(segments)
    }

    /// This path, consumed, extended by one segment.
    #[must_use]
    pub fn push(mut self, segment: Segment) -> Self {
        self.0.push(segment);
        self
    }

    /// The segments, root first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// RFC 6901 JSON pointer (`~` → `~0`, `/` → `~1`).
    pub fn to_pointer(&self) -> String {
        let mut out = String::new();
        for seg in &self.0 {
            out.push('/');
            match seg {
                Segment::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
                Segment::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }
}

impl From<&str> for FieldPath {
    fn from(dotted: &str) -> Self {
        Self::parse(dotted)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<object>");
        }
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if is_plain(k) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => write!(f, "[{k}]")?,
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

fn is_plain(k: &str) -> bool {
    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_kubectl_style_and_pointer() {
        let p = FieldPath::parse("spec.extraEnv").index(2).key("name");
        assert_eq!(p.to_string(), "spec.extraEnv[2].name");
        assert_eq!(p.to_pointer(), "/spec/extraEnv/2/name");
        let a = FieldPath::parse("metadata.annotations").key("example.com/a~b");
        assert_eq!(a.to_string(), "metadata.annotations[example.com/a~b]");
        assert_eq!(a.to_pointer(), "/metadata/annotations/example.com~1a~0b");
        assert_eq!(FieldPath::root().to_string(), "<object>");
    }
}
