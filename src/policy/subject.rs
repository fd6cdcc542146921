//! What a rule sees: the decoded object (and old object), the request, a `Lookup`, and a
//! `Report` to write findings into.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::finding::{Finding, Severity};
use super::kind::Kind;
use super::lookup::{Found, Lookup, ObjectKey};
use super::path::{FieldPath, Segment};
use super::{Operation, Options, Request};
use crate::api::coder::{CoderControlPlane, CoderProvisioner, CoderWorkspaceProxy};
use crate::api::own::{CoderAIProvider, CoderInstance, CoderOrganization, CoderProvisionerKey};
use crate::api::workload::Deployment;

/// A decoded object of a kind the engine knows.
#[derive(Clone, Debug)]
pub enum Object {
    ControlPlane(Box<CoderControlPlane>),
    Provisioner(CoderProvisioner),
    WorkspaceProxy(CoderWorkspaceProxy),
    Instance(CoderInstance),
    Organization(CoderOrganization),
    AiProvider(CoderAIProvider),
    ProvisionerKey(CoderProvisionerKey),
    Deployment(Deployment),
}

/// An object that does not have its kind's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    pub path: FieldPath,
    pub message: String,
}

impl Object {
    /// Decodes `value` as `kind`. Secrets have no view.
    pub fn decode(kind: Kind, value: &Value) -> Result<Object, DecodeError> {
        Ok(match kind {
            Kind::CoderControlPlane => Object::ControlPlane(Box::new(decode(value)?)),
            Kind::CoderProvisioner => Object::Provisioner(decode(value)?),
            Kind::CoderWorkspaceProxy => Object::WorkspaceProxy(decode(value)?),
            Kind::CoderInstance => Object::Instance(decode(value)?),
            Kind::CoderOrganization => Object::Organization(decode(value)?),
            Kind::CoderAIProvider => Object::AiProvider(decode(value)?),
            Kind::CoderProvisionerKey => Object::ProvisionerKey(decode(value)?),
            Kind::Deployment => Object::Deployment(decode(value)?),
            Kind::Secret => {
                return Err(DecodeError { path: FieldPath::root(), message: "Secrets are not evaluated".into() });
            }
        })
    }
}

/// Decodes a raw object into a view, with the path of the first field that does not fit.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, DecodeError> {
    // The plain decoder is several times faster; the path-tracking one only runs to explain
    // a failure.
    if let Ok(t) = T::deserialize(value) {
        return Ok(t);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().iter().fold(FieldPath::root(), |p, seg| match seg {
            serde_path_to_error::Segment::Seq { index } => p.index(*index),
            serde_path_to_error::Segment::Map { key } => p.key(key.clone()),
            serde_path_to_error::Segment::Enum { variant } => p.key(variant.clone()),
            serde_path_to_error::Segment::Unknown => p,
        });
        DecodeError { path, message: format!("{}; fix the field to match the kind's schema", redact(e.inner())) }
    })
}

/// Decodes compact JSON text (a `Lookup::object` answer) into a view, without building a
/// `Value` unless it does not fit (then `decode` says where).
pub fn decode_str<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    serde_json::from_str(text).or_else(|_| match serde_json::from_str::<Value>(text) {
        Ok(value) => decode(&value),
        Err(e) => Err(DecodeError { path: FieldPath::root(), message: redact(&e) }),
    })
}

/// serde's message without the value it quotes (`invalid type: string "…", expected u32`
/// becomes `the value has the wrong type, expected u32`): the value may be a credential.
pub fn redact(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let expected = message.split_once(", expected ").map(|(_, exp)| format!("expected {exp}"));
    if message.starts_with("invalid type") {
        format!("the value has the wrong type, {}", expected.unwrap_or_default())
    } else if message.starts_with("invalid value") || message.starts_with("invalid length") {
        format!("the value is not accepted, {}", expected.unwrap_or_default())
    } else if message.starts_with("unknown variant") {
        format!("the value is not one of the allowed values, {}", expected.unwrap_or_default())
    } else if message.starts_with("missing field") || message.starts_with("duplicate field") {
        message
    } else {
        "the value does not fit the field".to_owned()
    }
}

/// The input of one rule run.
pub struct Subject<'a> {
    pub req: &'a Request<'a>,
    pub lookup: &'a dyn Lookup,
    pub object: &'a Object,
    /// The old object on UPDATE, when it decodes.
    pub old: Option<&'a Object>,
    pub options: Options,
}

impl Subject<'_> {
    /// The request's namespace.
    pub fn namespace(&self) -> &str {
        self.req.namespace
    }

    /// True on UPDATE.
    pub fn is_update(&self) -> bool {
        self.req.operation == Operation::Update
    }

    /// A `CoderControlPlane` in the request's namespace, decoded.
    pub fn control_plane(&self, name: &str) -> Found<CoderControlPlane> {
        self.typed(Kind::CoderControlPlane, name)
    }

    /// A `CoderInstance` in the request's namespace, decoded.
    pub fn instance(&self, name: &str) -> Found<CoderInstance> {
        self.typed(Kind::CoderInstance, name)
    }

    fn typed<T: DeserializeOwned>(&self, kind: Kind, name: &str) -> Found<T> {
        match self.lookup.object(kind, self.namespace(), name) {
            Found::Present(text) => match serde_json::from_str(&text) {
                Ok(t) => Found::Present(t),
                Err(_) => Found::Unknown,
            },
            Found::Absent => Found::Absent,
            Found::Unknown => Found::Unknown,
        }
    }

    /// The key of an object in the request's namespace.
    pub fn key(&self, kind: Kind, name: &str) -> ObjectKey {
        ObjectKey { kind, namespace: self.namespace().to_owned(), name: name.to_owned() }
    }
}

/// Collects one rule's findings.
pub struct Report {
    rule: &'static str,
    findings: Vec<Finding>,
    audit: BTreeMap<String, String>,
    absent: Vec<ObjectKey>,
}

impl Report {
    pub(crate) fn new(rule: &'static str) -> Self {
        Self { rule, findings: Vec::new(), audit: BTreeMap::new(), absent: Vec::new() }
    }

    /// Reports a finding of `severity` at `path`.
    pub fn push(&mut self, severity: Severity, path: impl Into<FieldPath>, message: impl Into<String>) {
        self.findings.push(Finding { rule: self.rule, path: path.into(), message: message.into(), severity });
    }

    /// Reports a denying finding.
    pub fn deny(&mut self, path: impl Into<FieldPath>, message: impl Into<String>) {
        self.push(Severity::Error, path, message);
    }

    /// Reports a warning.
    pub fn warn(&mut self, path: impl Into<FieldPath>, message: impl Into<String>) {
        self.push(Severity::Warning, path, message);
    }

    /// Records that a referenced object was reported absent.
    pub fn absent(&mut self, key: ObjectKey) {
        self.absent.push(key);
    }

    /// Adds an audit annotation (key without prefix; the server namespaces it).
    pub fn audit(&mut self, key: &str, value: impl Into<String>) {
        self.audit.insert(key.to_owned(), value.into());
    }

    pub(crate) fn finish(self) -> (Vec<Finding>, BTreeMap<String, String>, Vec<ObjectKey>) {
        (self.findings, self.audit, self.absent)
    }
}

/// Shorthand for building a `FieldPath` from mixed keys and indices: `fp!("spec", "env", 2)`.
/// Built in place: one allocation, none per field name a rule spells out.
#[macro_export]
macro_rules! fp {
    ($($seg:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut p = $crate::policy::path::FieldPath::with_capacity($crate::fp!(@count $($seg),*));
        $( p = $crate::policy::subject::PathSeg::extend($seg, p); )*
        p
    }};
    (@count $($seg:expr),*) => { 0usize $(+ { let _ = stringify!($seg); 1usize })* };
}

/// A value usable as a path segment in `fp!`.
pub trait PathSeg {
    fn extend(self, path: FieldPath) -> FieldPath;
}

impl PathSeg for &'static str {
    fn extend(self, path: FieldPath) -> FieldPath {
        path.push(Segment::Key(Cow::Borrowed(self)))
    }
}

impl PathSeg for &String {
    fn extend(self, path: FieldPath) -> FieldPath {
        path.push(Segment::Key(Cow::Owned(self.clone())))
    }
}

impl PathSeg for usize {
    fn extend(self, path: FieldPath) -> FieldPath {
        path.push(Segment::Index(self))
    }
}

impl PathSeg for &FieldPath {
    fn extend(self, path: FieldPath) -> FieldPath {
        self.segments().iter().cloned().fold(path, FieldPath::push)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::own::CoderProvisionerKey;

    #[test]
    fn decode_str_reads_text_and_says_where_it_does_not_fit() {
        let good = r#"{"apiVersion":"coderd.coder.com/v1alpha1","kind":"CoderProvisionerKey",
            "metadata":{"name":"k","namespace":"ns"},"spec":{"instanceRef":{"name":"i"},"secretName":"s"}}"#;
        let key: CoderProvisionerKey = decode_str(good).unwrap();
        assert_eq!(key.secret_name(), "s");

        let bad = good.replace(r#""secretName":"s""#, r#""secretName":7"#);
        let e = decode_str::<CoderProvisionerKey>(&bad).unwrap_err();
        assert_eq!(e.path.to_string(), "spec.secretName");
        assert!(!e.message.contains('7'), "the value is not quoted: {}", e.message);

        let e = decode_str::<CoderProvisionerKey>("{not json").unwrap_err();
        assert_eq!(e.path, FieldPath::root());
    }
}
