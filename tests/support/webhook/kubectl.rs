//! What a user sees from `kubectl`: exit status, the webhook's denial with its `[rule] path`
//! findings, and `Warning:` lines.

use serde_json::Value;

use super::CoderGuard;
use crate::support::text;

impl CoderGuard {
    /// `kubectl apply <flags> -f -` of `object` (its namespace inside); what the user sees.
    pub fn apply(&self, flags: &[&str], object: &Value) -> Seen {
        let mut args = vec!["apply"];
        args.extend_from_slice(flags);
        args.extend(["-f", "-"]);
        let out = self.api.kubectl_stdin(&args, &object.to_string());
        let name = object["metadata"]["name"].as_str().unwrap_or("?");
        let kind = object["kind"].as_str().unwrap_or("?");
        Seen::new(format!("kubectl {} ({kind} {name})", args.join(" ")), out)
    }

    /// The stored object as JSON, `None` when the API server says NotFound.
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let out = self.api.kubectl(["get", kind, name, "-n", ns, "-o", "json"]);
        if out.status.success() {
            return Some(serde_json::from_slice(&out.stdout).expect("kubectl get -o json prints JSON"));
        }
        let stderr = text(&out.stderr);
        assert!(stderr.contains("(NotFound)"), "kubectl get {kind} {name} -n {ns} failed:\n{stderr}");
        None
    }
}

/// One kubectl run: exit status and output.
#[derive(Debug)]
pub struct Seen {
    /// The command, for messages.
    pub what: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Seen {
    pub fn new(what: String, out: std::process::Output) -> Seen {
        Seen { what, success: out.status.success(), stdout: text(&out.stdout), stderr: text(&out.stderr) }
    }

    /// The `Warning: ` lines kubectl printed, without the prefix.
    pub fn warnings(&self) -> Vec<&str> {
        self.stderr.lines().filter_map(|l| l.strip_prefix("Warning: ")).collect()
    }

    /// What `hook` said after `denied the request: `, if it denied.
    pub fn denial(&self, hook: &str) -> Option<&str> {
        let marker = format!("admission webhook \"{hook}\" denied the request: ");
        let at = self.stderr.find(&marker)?;
        Some(self.stderr[at + marker.len()..].trim_end())
    }

    /// Succeeded without any warning.
    pub fn accepted(&self) -> Result<(), String> {
        match (self.success, self.warnings().is_empty()) {
            (true, true) => Ok(()),
            (true, false) => Err(format!("{}: accepted, but with warnings:\n{}", self.what, self.stderr)),
            (false, _) => Err(format!("{}: refused:\n{}", self.what, self.stderr)),
        }
    }

    /// Succeeded with a warning `[rule] path: …` from coder-guard (and no other warning).
    pub fn warned(&self, rule: &str, path: &str) -> Result<(), String> {
        let want = format!("[{rule}] {path}: ");
        if !self.success {
            return Err(format!("{}: refused, expected a {want:?} warning:\n{}", self.what, self.stderr));
        }
        match self.warnings()[..] {
            [only] if only.starts_with(&want) => Ok(()),
            _ => {
                Err(format!("{}: expected exactly one warning starting {want:?}; stderr:\n{}", self.what, self.stderr))
            }
        }
    }

    /// Failed with exit code 1 and `admission webhook "<hook>" denied the request: ` listing
    /// exactly these `[rule] path: …` findings, in this order.
    pub fn denied(&self, hook: &str, findings: &[(&str, &str)]) -> Result<(), String> {
        if self.success {
            return Err(format!("{}: accepted, expected a denial by {hook}:\n{}", self.what, self.stdout));
        }
        let Some(message) = self.denial(hook) else {
            return Err(format!(
                "{}: no `admission webhook \"{hook}\" denied the request`:\n{}",
                self.what, self.stderr
            ));
        };
        let listed = denied_findings(message);
        let want: Vec<String> = findings.iter().map(|(rule, path)| format!("[{rule}] {path}")).collect();
        if listed != want {
            return Err(format!("{}: denial lists {listed:?}, expected {want:?}:\n{}", self.what, self.stderr));
        }
        Ok(())
    }
}

/// `[rule] path` of each finding in a deny message `[r1] p1: m1; [r2] p2: m2`.
fn denied_findings(message: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = message;
    while let Some(start) = rest.find('[') {
        let candidate = &rest[start..];
        let is_finding = candidate
            .find("] ")
            .is_some_and(|end| candidate[1..end].bytes().all(|b| b.is_ascii_lowercase() || b == b'-') && end > 1);
        if is_finding && (start == 0 || rest[..start].ends_with("; ")) {
            let end = candidate.find(": ").unwrap_or(candidate.len());
            out.push(candidate[..end].to_owned());
            rest = &candidate[end..];
        } else {
            rest = &candidate[1..];
        }
    }
    out
}
