//! The `coder-guard` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use coder_guard::check::report::{self, Format};
use coder_guard::check::{AssumedSecret, CheckInput};
use coder_guard::policy::rules::{self, RuleInfo};
use coder_guard::policy::{Engine, Mode, Options, RuleConfig, Severity};

/// Keeps a Coder deployment on Kubernetes correct: admission webhook, reconcile loop and
/// offline checks for CI.
#[derive(Parser, Debug)]
#[command(name = "coder-guard", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check manifests offline with the admission rules (exit 0 pass, 1 denied, 2 input error).
    Check(CheckArgs),
    /// List the rule catalog, or explain one rule.
    Rules {
        /// A rule id to explain.
        id: Option<String>,
    },
    /// Print generated manifests.
    #[command(subcommand)]
    Manifests(ManifestsCommand),
}

#[derive(Subcommand, Debug)]
enum ManifestsCommand {
    /// CustomResourceDefinitions of coder-guard's kinds.
    Crds {
        /// Write one file per CRD into this directory instead of printing a YAML stream.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// The Validating- and MutatingWebhookConfiguration (as in webhook-config/).
    Webhooks(WebhooksArgs),
}

#[derive(Args, Debug)]
struct WebhooksArgs {
    /// Namespace coder-guard runs in (excluded from the webhooks).
    #[arg(long, default_value = "coder-guard")]
    namespace: String,
    /// Service in front of coder-guard's webhook port.
    #[arg(long, default_value = "coder-guard")]
    service: String,
    /// Service port.
    #[arg(long, default_value_t = 443)]
    port: i32,
    /// Call this URL prefix instead of a Service (e.g. https://127.0.0.1:9443).
    #[arg(long, conflicts_with_all = ["service", "port"])]
    url: Option<String>,
    /// PEM file to set as caBundle (omit when cert-manager or --self-signed injects it).
    #[arg(long, value_name = "FILE")]
    ca_bundle_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Files, directories (searched recursively for .yaml/.yml/.json) or `-` for stdin.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// Output format, optionally to a file: `text`, `sarif=out.sarif`. Repeat for several.
    #[arg(short, long = "output", value_name = "FORMAT[=FILE]", default_value = "text", value_parser = parse_output)]
    outputs: Vec<OutputSpec>,
    /// Rule configuration file (modes and namespace exemptions), as mounted into the webhook.
    #[arg(long, value_name = "FILE", env = "CODER_GUARD_CONFIG")]
    config: Option<PathBuf>,
    /// Namespace of objects that do not set one.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// Treat this Secret as existing: NAMESPACE/NAME (any key) or NAMESPACE/NAME:KEY. Repeatable.
    #[arg(long, value_name = "NS/NAME[:KEY]")]
    assume_secret: Vec<String>,
    /// Report references that cannot be resolved offline as errors instead of warnings.
    #[arg(long)]
    strict_refs: bool,
    /// Exit 1 on warnings too.
    #[arg(long)]
    fail_on_warn: bool,
    /// Evaluate objects that exist at this git revision (same paths) as UPDATEs.
    #[arg(long, value_name = "REV")]
    base: Option<String>,
    /// Evaluate objects that exist in these manifests as UPDATEs. Repeatable.
    #[arg(long, value_name = "PATH")]
    previous: Vec<String>,
}

/// `FORMAT[=FILE]`.
#[derive(Clone, Debug)]
struct OutputSpec {
    format: Format,
    file: Option<PathBuf>,
}

fn parse_output(s: &str) -> Result<OutputSpec, String> {
    use clap::ValueEnum;
    let (name, file) = match s.split_once('=') {
        Some((n, f)) if !f.is_empty() => (n, Some(PathBuf::from(f))),
        Some(_) => return Err(format!("{s:?}: name a file after '=' or drop it")),
        None => (s, None),
    };
    let format = Format::from_str(name, true)
        .map_err(|_| format!("unknown format {name:?}; use text, json, junit, sarif or github"))?;
    Ok(OutputSpec { format, file })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check(args),
        Command::Rules { id } => {
            print!("{}", rules_text(id.as_deref())?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Manifests(ManifestsCommand::Crds { out }) => {
            crds(out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Manifests(ManifestsCommand::Webhooks(args)) => {
            print!("{}", webhooks(args)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let CheckArgs { paths, outputs, config, namespace, assume_secret, strict_refs, fail_on_warn, base, previous } =
        args;
    let config = match &config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read --config {}", path.display()))?;
            RuleConfig::parse(&text, &path.display().to_string(), &rules::ids())?
        }
        None => RuleConfig::default(),
    };
    let assume_secrets = assume_secret
        .iter()
        .map(|s| AssumedSecret::parse(s, &namespace))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let unverifiable = if strict_refs { Severity::Error } else { Severity::Warning };
    let engine = Engine::new(config, Options { unverifiable });
    let input = CheckInput { paths, namespace, assume_secrets, base, previous };
    let result = coder_guard::check::run(&engine, &input);

    for OutputSpec { format, file } in &outputs {
        let rendered = report::render(*format, &result);
        match file {
            Some(path) => std::fs::write(path, rendered)
                .with_context(|| format!("cannot write the {format:?} report to {}", path.display()))?,
            None => print!("{rendered}"),
        }
    }
    let code = if !result.errors.is_empty() {
        2
    } else if result.count(Severity::Error) > 0 || (fail_on_warn && result.count(Severity::Warning) > 0) {
        1
    } else {
        0
    };
    Ok(ExitCode::from(code))
}

fn rules_text(id: Option<&str>) -> anyhow::Result<String> {
    let kinds = |r: &RuleInfo| r.kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
    let Some(id) = id else {
        let mut out = String::new();
        for r in rules::infos() {
            out.push_str(&format!("{:<28} {:<8} {}\n", r.id, r.default_mode.as_str(), r.summary));
        }
        out.push_str("\n`coder-guard rules ID` explains a rule. Modes: enforce denies, warn allows with a warning.\n");
        return Ok(out);
    };
    let Some(r) = rules::info(id) else {
        bail!("unknown rule {id:?}; run `coder-guard rules` for the list");
    };
    let mode = match r.default_mode {
        Mode::Enforce => "enforce (denies)",
        Mode::Warn => "warn (allows with a warning)",
        Mode::Off => "off",
    };
    Ok(format!("{}\n\n{}\n\n{}\n\nApplies to: {}\nDefault mode: {mode}\n", r.id, r.summary, r.explanation, kinds(r)))
}

fn crds(out: Option<PathBuf>) -> anyhow::Result<()> {
    let all = coder_guard::api::crds::all();
    match out {
        None => print!("{}", coder_guard::api::crds::render_stream(&all)?),
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            for crd in &all {
                let path = dir.join(coder_guard::api::crds::file_name(crd));
                std::fs::write(&path, coder_guard::api::crds::render(crd)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn webhooks(args: WebhooksArgs) -> anyhow::Result<String> {
    use coder_guard::api::webhooks::{self, Endpoint, Options};
    let WebhooksArgs { namespace, service, port, url, ca_bundle_file } = args;
    let endpoint = match url {
        Some(url) => Endpoint::Url(url),
        None => Endpoint::Service { namespace: namespace.clone(), name: service, port },
    };
    let ca_bundle = match ca_bundle_file {
        Some(path) => {
            Some(std::fs::read(&path).with_context(|| format!("cannot read --ca-bundle-file {}", path.display()))?)
        }
        None => None,
    };
    Ok(webhooks::render(&Options { endpoint, namespace, ca_bundle })?)
}
