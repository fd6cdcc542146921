//! The `coder-guard` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use coder_guard::check::report::{self, Format};
use coder_guard::check::{AssumedSecret, CheckInput};
use coder_guard::policy::rules::{self, RuleInfo};
use coder_guard::policy::{Engine, Mode, Options, RuleConfig, Severity};
use coder_guard::reconcile;
use coder_guard::server::{self, GoDuration};

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
    /// Run the admission webhook (HTTPS) with probes and metrics on an admin port.
    Serve(Box<ServeArgs>),
    /// Serving certificates for the webhook.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Delete coder-guard's webhook configurations (the Helm chart's pre-delete hook); absent ones are fine.
    UninstallWebhooks(UninstallArgs),
}

/// `coder-guard uninstall-webhooks`.
#[derive(Args, Debug)]
struct UninstallArgs {
    /// Name of the ValidatingWebhookConfiguration and the MutatingWebhookConfiguration.
    #[arg(long, default_value = "coder-guard")]
    name: String,
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// Write a CA and a serving certificate for the webhook Service as files.
    Generate(coder_guard::certs::GenerateArgs),
}

/// `coder-guard serve`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("tls").args(["tls_cert_file", "self_signed"])))]
struct ServeArgs {
    /// Webhook HTTPS address.
    #[arg(long, value_name = "ADDR", env = "CODER_GUARD_LISTEN", default_value = "0.0.0.0:9443")]
    listen: SocketAddr,
    /// Plain-HTTP address of /healthz, /readyz and /metrics.
    #[arg(long, value_name = "ADDR", env = "CODER_GUARD_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    admin_listen: SocketAddr,
    /// Serving certificate (PEM, leaf first, then intermediates); reloaded when it changes.
    #[arg(long, value_name = "FILE", env = "CODER_GUARD_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM) for --tls-cert-file.
    #[arg(long, value_name = "FILE", env = "CODER_GUARD_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// Issue the serving certificate, renewed ahead of expiry, from a self-signed CA kept in a Secret that every
    /// replica shares (--self-signed-ca-secret); the leader creates and rotates the CA and patches it into the
    /// coder-guard webhook configurations' caBundle.
    #[arg(long, env = "CODER_GUARD_SELF_SIGNED")]
    self_signed: bool,
    /// DNS name for the self-signed certificate; repeatable [default: coder-guard, coder-guard.NS,
    /// coder-guard.NS.svc, coder-guard.NS.svc.cluster.local with NS from POD_NAMESPACE]
    #[arg(
        long = "self-signed-dns-name",
        value_name = "NAME",
        requires = "self_signed",
        env = "CODER_GUARD_SELF_SIGNED_DNS_NAMES",
        value_delimiter = ','
    )]
    self_signed_dns_names: Vec<String>,
    /// Secret in POD_NAMESPACE holding the self-signed CA (keys ca.crt and ca.key; the leader creates it).
    #[arg(long, value_name = "NAME", env = "CODER_GUARD_SELF_SIGNED_CA_SECRET",
          default_value = coder_guard::certs::DEFAULT_CA_SECRET,
          requires = "self_signed")]
    self_signed_ca_secret: String,
    /// Testing: validity of the self-signed CA; the serving certificate's validity and renewal, the CA's publish
    /// grace and the Secret's poll interval shrink with it.
    #[arg(
        long,
        value_name = "DURATION",
        env = "CODER_GUARD_SELF_SIGNED_CA_VALIDITY",
        hide = true,
        requires = "self_signed"
    )]
    self_signed_ca_validity: Option<GoDuration>,
    /// Rule configuration (modes, namespace exemptions), e.g. a mounted ConfigMap; reloaded when it changes.
    #[arg(long, value_name = "FILE", env = "CODER_GUARD_CONFIG")]
    config: Option<PathBuf>,
    /// Watch only this namespace (repeatable); default all namespaces.
    #[arg(long = "namespace", value_name = "NS", env = "CODER_GUARD_NAMESPACES", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Admission requests decoded and evaluated at once; more wait up to 1s, then get 503.
    #[arg(long, value_name = "N", env = "CODER_GUARD_MAX_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_concurrency: u32,
    /// After SIGTERM, report not ready but keep serving this long, so the Service stops sending requests.
    #[arg(long, value_name = "DURATION", env = "CODER_GUARD_SHUTDOWN_DELAY", default_value = "5s")]
    shutdown_delay: GoDuration,
    /// Then wait at most this long for in-flight requests to finish.
    #[arg(long, value_name = "DURATION", env = "CODER_GUARD_DRAIN_TIMEOUT", default_value = "20s")]
    drain_timeout: GoDuration,
    /// Time a client has to complete the TLS handshake.
    #[arg(long, value_name = "DURATION", env = "CODER_GUARD_HANDSHAKE_TIMEOUT", default_value = "10s")]
    handshake_timeout: GoDuration,
    /// Time a client has to send request headers; also closes idle keep-alive connections.
    #[arg(long, value_name = "DURATION", env = "CODER_GUARD_HEADER_TIMEOUT", default_value = "10s")]
    header_timeout: GoDuration,
    /// Log line format.
    #[arg(long, value_enum, env = "CODER_GUARD_LOG_FORMAT", default_value = "text")]
    log_format: LogFormatArg,
    /// Do not serve the webhook (no certificate needed): only the admin port.
    #[arg(long, env = "CODER_GUARD_NO_WEBHOOK", conflicts_with_all = ["tls_cert_file", "self_signed", "dev"])]
    no_webhook: bool,
    /// Do not run the reconcile loop (which keeps coderd's license, appearance, organizations, IdP sync, AI
    /// providers and provisioner keys equal to coder-guard's resources, on the leader replica only).
    #[arg(long, env = "CODER_GUARD_NO_RECONCILE")]
    no_reconcile: bool,
    /// Reconcile loop: how often every resource is compared with coderd even when nothing changed.
    #[arg(long, value_name = "DURATION", env = "CODER_GUARD_RESYNC_INTERVAL", default_value = "5m")]
    resync_interval: GoDuration,
    /// Reconcile loop: how often a resource that waits on a person (no license, open-source coderd, invalid spec)
    /// is re-checked; spec and Secret changes are still acted on at once.
    #[arg(long, value_name = "DURATION", env = "CODER_GUARD_SLOW_RECHECK_INTERVAL", default_value = "15m")]
    slow_recheck_interval: GoDuration,
    /// Reconcile loop: timeout of one coderd API request.
    #[arg(long, value_name = "DURATION", env = "CODER_GUARD_CODERD_TIMEOUT", default_value = "15s")]
    coderd_timeout: GoDuration,
    /// Reconcile loop: resources of one kind reconciled at once (coderd rate-limits its API per user, 512
    /// requests per minute by default).
    #[arg(long, value_name = "N", env = "CODER_GUARD_RECONCILE_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    reconcile_concurrency: u16,
    /// Development: loopback only, a self-signed certificate, no cluster (lookups are "unknown"); prints the CA
    /// file and a curl command.
    #[arg(long, env = "CODER_GUARD_DEV", conflicts_with_all = ["tls_cert_file", "self_signed", "namespaces"])]
    dev: bool,
    /// With --dev: manifests (YAML, multi-document) whose Secrets and Coder objects lookups find; repeatable.
    #[arg(long, value_name = "FILE", requires = "dev")]
    dev_objects: Vec<PathBuf>,
    /// Benchmark baseline: answer every review with an allow without evaluating.
    #[arg(long, hide = true)]
    no_op_policy: bool,
    /// Testing: validate the arguments and exit 0 without starting.
    #[arg(long, hide = true)]
    check_args: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
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
    /// The Roles, ClusterRoles and bindings `serve` needs (what the Helm chart grants).
    Rbac(RbacArgs),
}

#[derive(Args, Debug)]
struct RbacArgs {
    /// Namespace coder-guard runs in (its service account and leader-election Lease).
    #[arg(long, default_value = "coder-guard")]
    namespace: String,
    /// Service account `serve` runs as; also the prefix of the object names.
    #[arg(long, default_value = "coder-guard")]
    service_account: String,
    /// As `serve --namespace`: grant in these namespaces only (Roles) instead of cluster-wide; repeatable.
    #[arg(long = "watch-namespace", value_name = "NS", value_delimiter = ',')]
    watch_namespaces: Vec<String>,
    /// As `serve --no-reconcile`: leave out the reconcile loop's rules.
    #[arg(long)]
    no_reconcile: bool,
    /// As `serve --self-signed`: add the rules for the shared CA Secret and for patching caBundle.
    #[arg(long)]
    self_signed: bool,
    /// As `serve --self-signed-ca-secret`.
    #[arg(long, value_name = "NAME", default_value = coder_guard::certs::DEFAULT_CA_SECRET)]
    self_signed_ca_secret: String,
    /// Also grant `uninstall-webhooks` its rules, to this service account.
    #[arg(long, value_name = "NAME")]
    uninstall_service_account: Option<String>,
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
        Command::Serve(args) => {
            serve(*args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs(CertsCommand::Generate(args)) => {
            coder_guard::certs::generate(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Manifests(ManifestsCommand::Rbac(args)) => {
            print!("{}", rbac(args)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::UninstallWebhooks(args) => {
            uninstall_webhooks(args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use coder_guard::certs::{self, DEFAULT_LEAF_VALIDITY, DEFAULT_RENEW_BEFORE, Source};
    use coder_guard::server::run::{ClusterMode, ServeConfig};
    use coder_guard::server::{ConnectionLimits, Limits, LogFormat, Settings};

    let ServeArgs {
        listen,
        admin_listen,
        tls_cert_file,
        tls_key_file,
        self_signed,
        self_signed_dns_names,
        self_signed_ca_secret,
        self_signed_ca_validity,
        config,
        namespaces,
        max_concurrency,
        shutdown_delay,
        drain_timeout,
        handshake_timeout,
        header_timeout,
        log_format,
        no_webhook,
        no_reconcile,
        resync_interval,
        slow_recheck_interval,
        coderd_timeout,
        reconcile_concurrency,
        dev,
        dev_objects,
        no_op_policy,
        check_args,
    } = args;
    server::logging::init(match log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    });

    let loopback = |addr: SocketAddr| SocketAddr::from(([127, 0, 0, 1], addr.port()));
    let (listen, admin_listen) = if dev { (loopback(listen), loopback(admin_listen)) } else { (listen, admin_listen) };
    let self_signed_source = |dns_names: Vec<String>| Source::SelfSigned {
        dns_names,
        validity: DEFAULT_LEAF_VALIDITY,
        renew_before: DEFAULT_RENEW_BEFORE,
    };
    let pod_namespace = std::env::var("POD_NAMESPACE").ok().filter(|n| !n.is_empty());
    let certificates = match (tls_cert_file, tls_key_file) {
        _ if no_webhook => None,
        _ if dev => Some(self_signed_source(vec!["localhost".into(), "127.0.0.1".into()])),
        (Some(cert), Some(key)) => Some(Source::Files { cert, key }),
        _ if self_signed => Some(Source::Shared(certs::SharedCa {
            dns_names: if self_signed_dns_names.is_empty() {
                certs::service_dns_names("coder-guard", pod_namespace.as_deref().unwrap_or("coder-guard"))
            } else {
                self_signed_dns_names
            },
            secret_name: self_signed_ca_secret,
            timing: self_signed_ca_validity
                .map_or_else(certs::Timing::default, |v| certs::Timing::for_ca_validity(v.0)),
        })),
        _ => bail!(
            "the webhook needs a serving certificate: pass --tls-cert-file and --tls-key-file, or --self-signed \
             (or --dev to try it locally, --no-webhook to serve only the admin port)"
        ),
    };
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("coder-guard-{}", std::process::id()));
    let cluster = if dev {
        ClusterMode::Offline { objects: dev_objects }
    } else {
        ClusterMode::Connect {
            namespaces: namespaces.clone(),
            lease_namespace: pod_namespace,
            reconcile: (!no_reconcile).then(|| reconcile::Config {
                resync: resync_interval.0,
                slow: slow_recheck_interval.0,
                timeout: coderd_timeout.0,
                identity: identity.clone(),
                concurrency: reconcile_concurrency,
                namespaces,
            }),
            identity,
        }
    };
    let settings = Settings {
        listen,
        admin_listen,
        limits: Limits { max_concurrency: max_concurrency as usize, ..Limits::default() },
        connections: ConnectionLimits { handshake_timeout: handshake_timeout.0, header_timeout: header_timeout.0 },
        rule_config: config,
        no_op: no_op_policy,
        ..Settings::default()
    };
    let config = ServeConfig {
        settings,
        certificates,
        cluster,
        shutdown_delay: shutdown_delay.0,
        drain_timeout: drain_timeout.0,
        dev,
    };
    if check_args {
        return Ok(());
    }
    if no_op_policy {
        tracing::warn!("--no-op-policy: every admission review is allowed without evaluating (benchmark baseline)");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the Tokio runtime")?;
    let served = runtime.block_on(server::run::serve(config));
    // Connections still open after the drain timeout are dropped here, not awaited.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(served?)
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
    let mutator = coder_guard::policy::mutate::MUTATORS.iter().any(|m| m.id == r.id);
    let mode = match r.default_mode {
        Mode::Enforce if mutator => "enforce (the mutation is applied; problems it finds deny)",
        Mode::Warn if mutator => "warn (the mutation is applied; problems it finds are warnings)",
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

fn rbac(args: RbacArgs) -> anyhow::Result<String> {
    use coder_guard::cluster::rbac::{RbacOptions, render};
    let RbacArgs {
        namespace,
        service_account,
        watch_namespaces,
        no_reconcile,
        self_signed,
        self_signed_ca_secret,
        uninstall_service_account,
    } = args;
    let options = RbacOptions {
        name: service_account.clone(),
        namespace,
        service_account,
        watch_namespaces,
        reconcile: !no_reconcile,
        self_signed,
        ca_secret: self_signed_ca_secret,
        uninstall_service_account,
    };
    Ok(render(&options)?)
}

/// Deletes both webhook configurations with the ambient kubeconfig or in-cluster config.
fn uninstall_webhooks(args: UninstallArgs) -> anyhow::Result<()> {
    use coder_guard::cluster::delete_webhook_configurations;
    server::logging::init(server::LogFormat::Text);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the Tokio runtime")?;
    let done = runtime.block_on(async {
        let client = kube::Client::try_default().await.context("cannot reach the Kubernetes API")?;
        anyhow::Ok(delete_webhook_configurations(&client, &args.name).await?)
    })?;
    println!("validatingwebhookconfiguration {}: {}", args.name, done.validating);
    println!("mutatingwebhookconfiguration {}: {}", args.name, done.mutating);
    Ok(())
}
