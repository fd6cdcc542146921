//! Provisioner conflicts: env and flags that make `coder provisioner start` (or the operator)
//! refuse to start, env the operator owns, and env names set more than once.
//!
//! Rules here read names and flags only. They never print an env value or an argument as
//! written, because both can carry keys (`--psk=…`, `CODER_PROVISIONER_DAEMON_KEY`).

use std::collections::BTreeMap;

use super::{Rule, RuleInfo};
use crate::api::common::EnvVar;
use crate::api::workload::Container;
use crate::fp;
use crate::policy::config::Mode;
use crate::policy::env;
use crate::policy::finding::Severity;
use crate::policy::kind::Kind;
use crate::policy::path::FieldPath;
use crate::policy::subject::{Object, Report, Subject};

/// Rules of this family.
pub const RULES: &[Rule] = &[
    Rule {
        info: RuleInfo {
            id: "provisioner-key-conflicts",
            summary: "A daemon using a provisioner key sets no organization, tags or pre-shared key",
            explanation: "`coder provisioner start` refuses to start when it is given a provisioner key \
together with an organization (`CODER_ORGANIZATION`, `--org`, `-O`), tags (`CODER_PROVISIONERD_TAGS`, \
`--tag`, `-t`) or a pre-shared key (`CODER_PROVISIONER_DAEMON_PSK`, `--psk`): the key already fixes the \
organization and the tags. The operator always starts CoderProvisioner daemons with a key, and a \
Deployment whose daemon gets `CODER_PROVISIONER_DAEMON_KEY` or `--key` is in the same position. Remove \
the conflicting env var or flag; put tags on the key (CoderProvisioner `spec.tags` or CoderProvisionerKey \
`spec.tags`) and choose the organization with `spec.organizationName` / `spec.organization`.",
            kinds: &[Kind::CoderProvisioner, Kind::Deployment],
            default_mode: Mode::Enforce,
        },
        check: key_conflicts,
    },
    Rule {
        info: RuleInfo {
            id: "operator-owned-env",
            summary: "extraEnv and extraArgs do not override the env the operator sets",
            explanation: "The operator gives provisioner daemons `CODER_URL` and \
`CODER_PROVISIONER_DAEMON_KEY`, and workspace proxies `CODER_PRIMARY_ACCESS_URL` and \
`CODER_PROXY_SESSION_TOKEN`. `spec.extraEnv` is appended after them, and Kubernetes keeps the last entry \
of a name, so an extra entry silently replaces the operator's value; a flag in `spec.extraArgs` (`--url`, \
`--key`, `--primary-access-url`, `--proxy-session-token`) takes precedence over the env var as well. \
Remove the entry and use the field the operator reads instead (`spec.controlPlaneRef`, `spec.key`, \
`spec.primaryAccessURL`, `spec.proxySessionTokenSecretRef` or `spec.bootstrap`).",
            kinds: &[Kind::CoderProvisioner, Kind::CoderWorkspaceProxy],
            default_mode: Mode::Enforce,
        },
        check: operator_owned,
    },
    Rule {
        info: RuleInfo {
            id: "env-duplicates",
            summary: "Env names are set once; the control plane's database URL is usable",
            explanation: "The operator stops reconciling a CoderControlPlane whose `spec.extraEnv` sets \
`CODER_PG_CONNECTION_URL` or `CODER_ACCESS_URL` more than once, and while operator access is enabled it \
needs `CODER_PG_CONNECTION_URL` as a literal `value` or a `valueFrom.secretKeyRef` to reach the database; \
these are denied. Any other name repeated in an `extraEnv` list or in one container's `env` is a \
warning: Kubernetes silently keeps only the last entry, so the earlier one has no effect. Keep one entry \
per name.",
            kinds: &[Kind::CoderControlPlane, Kind::CoderProvisioner, Kind::CoderWorkspaceProxy, Kind::Deployment],
            default_mode: Mode::Enforce,
        },
        check: env_duplicates,
    },
];

// === flags ===

/// A command-line flag that takes a value.
#[derive(Clone, Copy, Debug)]
struct Flag {
    long: &'static str,
    short: Option<char>,
}

impl Flag {
    const fn long(long: &'static str) -> Self {
        Self { long, short: None }
    }

    const fn short(long: &'static str, short: char) -> Self {
        Self { long, short: Some(short) }
    }

    /// How the flag is named in messages (never the argument as written: it may hold a key).
    fn display(self) -> String {
        match self.short {
            Some(c) => format!("--{} (-{c})", self.long),
            None => format!("--{}", self.long),
        }
    }

    /// Whether `arg` sets this flag, and whether its value is the next argument.
    fn matches(self, arg: &str) -> Option<bool> {
        if let Some(rest) = arg.strip_prefix("--") {
            let rest = rest.strip_prefix(self.long)?;
            return match rest.chars().next() {
                None => Some(true),
                Some('=') => Some(false),
                Some(_) => None,
            };
        }
        let short = self.short?;
        let rest = arg.strip_prefix('-')?.strip_prefix(short)?;
        Some(rest.is_empty())
    }
}

const ORG: Flag = Flag::short("org", 'O');
const TAG: Flag = Flag::short("tag", 't');
const PSK: Flag = Flag::long("psk");
const KEY: Flag = Flag::long("key");
const URL: Flag = Flag::long("url");
const PRIMARY_ACCESS_URL: Flag = Flag::long("primary-access-url");
const PROXY_SESSION_TOKEN: Flag = Flag::long("proxy-session-token");

/// Every flag this family knows; a bare one consumes the next argument as its value.
const KNOWN: [Flag; 7] = [ORG, TAG, PSK, KEY, URL, PRIMARY_ACCESS_URL, PROXY_SESSION_TOKEN];

/// Indices of `args` that set `flag` (`--f v`, `--f=v`, `-s v`, `-s=v`, `-sv`). Parsing stops
/// at `--`, and the value after a bare known flag is skipped so it is never taken for a flag.
fn flag_hits(args: &[String], flag: Flag) -> Vec<usize> {
    let mut hits = Vec::new();
    let mut i = 0;
    while i < args.len() && args[i] != "--" {
        let known = KNOWN.iter().find_map(|f| f.matches(&args[i]).map(|next| (f.long, next)));
        if let Some((long, takes_next)) = known {
            if long == flag.long {
                hits.push(i);
            }
            i += usize::from(takes_next);
        }
        i += 1;
    }
    hits
}

// === env helpers ===

/// The last entry named `name` (the one Kubernetes uses), with its index.
fn effective<'a>(env: &'a [EnvVar], name: &str) -> Option<(usize, &'a EnvVar)> {
    env.iter().enumerate().rev().find(|(_, e)| e.name == name)
}

/// True when the entry gives the process a non-empty value (or one we cannot see).
fn is_set(e: &EnvVar) -> bool {
    e.value_from.is_some() || e.value.as_deref().is_some_and(|v| !v.is_empty())
}

// === provisioner-key-conflicts ===

/// A setting that cannot be combined with a provisioner key.
struct Conflict {
    env: &'static str,
    flag: Flag,
    daemon_error: &'static str,
    fix: &'static str,
}

const CONFLICTS: [Conflict; 3] = [
    Conflict {
        env: env::ORGANIZATION,
        flag: ORG,
        daemon_error: "cannot provide --org value with --psk or --key flags",
        fix: "remove it: the key already belongs to one organization (choose it with CoderProvisioner \
spec.organizationName or CoderProvisionerKey spec.organization)",
    },
    Conflict {
        env: env::PROVISIONER_TAGS,
        flag: TAG,
        daemon_error: "cannot provide tags when using provisioner key",
        fix: "remove it and put the tags on the key instead (CoderProvisioner spec.tags or \
CoderProvisionerKey spec.tags)",
    },
    Conflict {
        env: env::PROVISIONER_PSK,
        flag: PSK,
        daemon_error: "cannot provide both provisioner key --key and pre-shared key --psk",
        fix: "remove the pre-shared key: the provisioner key alone authenticates the daemon",
    },
];

fn key_conflicts(s: &Subject<'_>, r: &mut Report) {
    match s.object {
        Object::Provisioner(p) => {
            let env = (fp!("spec", "extraEnv"), &p.spec.extra_env[..]);
            let why = "the operator always starts the daemon with a provisioner key";
            conflicts(r, env, &[(fp!("spec", "extraArgs"), &p.spec.extra_args)], why);
        }
        Object::Deployment(d) => {
            for (path, c) in d.containers().filter(|(_, c)| c.is_provisioner_daemon() && uses_key(c)) {
                let args = [(path.key("command"), &c.command[..]), (path.key("args"), &c.args[..])];
                let why = "this daemon authenticates with a provisioner key";
                conflicts(r, (path.key("env"), &c.env), &args, why);
            }
        }
        _ => {}
    }
}

/// True when the container is given a provisioner key by env or flag.
fn uses_key(c: &Container) -> bool {
    effective(&c.env, env::PROVISIONER_KEY).is_some_and(|(_, e)| is_set(e))
        || !flag_hits(&c.command, KEY).is_empty()
        || !flag_hits(&c.args, KEY).is_empty()
}

/// Reports each conflicting env var (the entry in force) and each conflicting flag.
fn conflicts(r: &mut Report, env: (FieldPath, &[EnvVar]), args: &[(FieldPath, &[String])], why: &str) {
    for c in &CONFLICTS {
        // Built only for a finding: this runs for every provisioner container.
        let refusal =
            || format!("{why}, so `coder provisioner start` refuses to start (\"{}\"); {}", c.daemon_error, c.fix);
        if let Some((i, e)) = effective(env.1, c.env)
            && is_set(e)
        {
            r.deny(fp!(&env.0, i, "name"), format!("{} is set but {}", c.env, refusal()));
        }
        for (path, args) in args {
            for i in flag_hits(args, c.flag) {
                r.deny(path.index(i), format!("the {} flag is given but {}", c.flag.display(), refusal()));
            }
        }
    }
}

// === operator-owned-env ===

/// Env and flags the operator sets, and where to configure them instead.
struct Owned {
    env: &'static str,
    flag: Flag,
    instead: &'static str,
}

const PROVISIONER_OWNED: [Owned; 2] = [
    Owned {
        env: env::CODER_URL,
        flag: URL,
        instead: "the daemon connects to the status.url of the CoderControlPlane named by \
spec.controlPlaneRef; change that reference instead",
    },
    Owned {
        env: env::PROVISIONER_KEY,
        flag: KEY,
        instead: "the operator passes the key it manages; use spec.key.secretName and spec.key.secretKey \
to choose where it is stored",
    },
];

const PROXY_OWNED: [Owned; 2] = [
    Owned {
        env: env::PRIMARY_ACCESS_URL,
        flag: PRIMARY_ACCESS_URL,
        instead: "set spec.primaryAccessURL (or spec.bootstrap.coderURL) instead",
    },
    Owned {
        env: env::PROXY_SESSION_TOKEN,
        flag: PROXY_SESSION_TOKEN,
        instead: "set spec.proxySessionTokenSecretRef (or spec.bootstrap) instead",
    },
];

fn operator_owned(s: &Subject<'_>, r: &mut Report) {
    let (owned, env, args) = match s.object {
        Object::Provisioner(p) => (&PROVISIONER_OWNED, &p.spec.extra_env, &p.spec.extra_args),
        Object::WorkspaceProxy(p) => (&PROXY_OWNED, &p.spec.extra_env, &p.spec.extra_args),
        _ => return,
    };
    for o in owned {
        for i in (0..env.len()).filter(|&i| env[i].name == o.env) {
            r.deny(
                fp!("spec", "extraEnv", i, "name"),
                format!(
                    "{} is set by the operator; spec.extraEnv is appended after the operator's env and \
Kubernetes keeps the last entry, so this would replace the operator's value. Remove it: {}",
                    o.env, o.instead
                ),
            );
        }
        for i in flag_hits(args, o.flag) {
            r.deny(
                fp!("spec", "extraArgs", i),
                format!(
                    "the --{} flag overrides {}, which the operator sets. Remove it: {}",
                    o.flag.long, o.env, o.instead
                ),
            );
        }
    }
}

// === env-duplicates ===

/// Names the operator refuses to see twice in a CoderControlPlane's `spec.extraEnv`.
const CONTROL_PLANE_SINGLE: [&str; 2] = [env::PG_CONNECTION_URL, env::ACCESS_URL];

fn env_duplicates(s: &Subject<'_>, r: &mut Report) {
    match s.object {
        Object::ControlPlane(cp) => {
            let path = fp!("spec", "extraEnv");
            duplicates(r, &path, &cp.spec.extra_env, &CONTROL_PLANE_SINGLE);
            if !cp.spec.operator_access.disabled {
                pg_url_source(r, &path, &cp.spec.extra_env);
            }
        }
        Object::Provisioner(p) => duplicates(r, &fp!("spec", "extraEnv"), &p.spec.extra_env, &[]),
        Object::WorkspaceProxy(p) => duplicates(r, &fp!("spec", "extraEnv"), &p.spec.extra_env, &[]),
        Object::Deployment(d) if d.is_coder() => {
            for (path, c) in d.containers() {
                duplicates(r, &path.key("env"), &c.env, &[]);
            }
        }
        _ => {}
    }
}

/// Reports every repeated entry of a name: a denial for `fatal` names, a warning otherwise.
fn duplicates(r: &mut Report, path: &FieldPath, env: &[EnvVar], fatal: &[&str]) {
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in env.iter().enumerate() {
        if e.name.is_empty() {
            continue;
        }
        let Some(&at) = first.get(e.name.as_str()) else {
            first.insert(&e.name, i);
            continue;
        };
        let (severity, why) = if fatal.contains(&e.name.as_str()) {
            let why = "the operator refuses to reconcile a control plane where it is configured more than once";
            (Severity::Error, why)
        } else {
            (Severity::Warning, "Kubernetes keeps only the last entry, so the earlier one has no effect")
        };
        let message = format!("{} is already set at {}; {why}. Keep a single entry", e.name, fp!(path, at));
        r.push(severity, fp!(path, i, "name"), message);
    }
}

/// With operator access enabled, the operator reads the database URL from a literal value or a
/// Secret key; any other source leaves operator access unready.
fn pg_url_source(r: &mut Report, path: &FieldPath, env: &[EnvVar]) {
    for (i, e) in env.iter().enumerate() {
        let from = e.value_from.as_ref();
        let literal = e.value.as_deref().is_some_and(|v| !v.is_empty());
        if e.name != env::PG_CONNECTION_URL || literal || from.is_some_and(|v| v.secret_key_ref.is_some()) {
            continue;
        }
        let message = format!(
            "{} has no value the operator can read: with spec.operatorAccess enabled it needs a literal value \
or valueFrom.secretKeyRef to reach the database (configMapKeyRef, fieldRef and envFrom are not read). Use \
a secretKeyRef, or set spec.operatorAccess.disabled: true",
            env::PG_CONNECTION_URL
        );
        r.deny(fp!(path, i, if from.is_some() { "valueFrom" } else { "value" }), message);
    }
}

#[cfg(test)]
mod tests;
