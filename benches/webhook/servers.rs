//! The servers, one process each.

use super::*;

pub struct Server {
    pub mode: &'static str,
    pub child: Child,
    pub webhook: SocketAddr,
    pub ca_pem: Vec<u8>,
}

impl Server {
    pub fn spawn(mode: &'static str, secrets: usize, pinned: bool, dir: &Path) -> Server {
        let ca = dir.join(format!("{mode}-{secrets}-ca.pem"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("CODER_GUARD_BENCH_SERVER", mode)
            .env("CODER_GUARD_BENCH_SECRETS", secrets.to_string())
            .env("CODER_GUARD_BENCH_CA", &ca)
            .env("CODER_GUARD_BENCH_WORKERS", if pinned { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("server process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let webhook = line.trim().strip_prefix("ready ").expect("ready line").parse().unwrap();
        if pinned {
            pin(child.id(), SERVER_CPU);
        }
        let ca_pem = std::fs::read(&ca).unwrap();
        // Let start-up allocations settle before the idle measurement.
        std::thread::sleep(Duration::from_millis(300));
        Server { mode, child, webhook, ca_pem }
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).unwrap())
            .http1_only()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// `VmRSS` and `VmHWM` in KiB.
    pub fn rss(&self) -> (u64, u64) {
        let pid = self.child.id();
        (procfs::status_kib(pid, "VmRSS:"), procfs::status_kib(pid, "VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The server process: starts the real server on 127.0.0.1:0, prints `ready ADDR`, and runs
/// until its stdin closes.
pub fn serve(mode: &str) {
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    let (secrets, workers) = (env("CODER_GUARD_BENCH_SECRETS"), env("CODER_GUARD_BENCH_WORKERS"));
    let ca_path = std::env::var("CODER_GUARD_BENCH_CA").expect("CA path");
    // As in production with --log-format json; the parent sends stderr to /dev/null.
    server::logging::init(LogFormat::Json);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    let runtime = builder.enable_all().build().unwrap();
    runtime.block_on(async move {
        let source = Source::SelfSigned {
            dns_names: vec!["127.0.0.1".into()],
            validity: certs::DEFAULT_LEAF_VALIDITY,
            renew_before: certs::DEFAULT_RENEW_BEFORE,
        };
        let cert = certs::start(source).await.expect("certificate");
        std::fs::write(&ca_path, cert.ca_bundle().unwrap()).unwrap();
        let settings = Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits {
                execution: if mode == "blocking" { Execution::Blocking } else { Execution::Adaptive },
                max_concurrency: 256,
                ..Limits::default()
            },
            no_op: mode.starts_with("no-op"),
            ..Settings::default()
        };
        let running = server::start(settings, Some(cert), Arc::new(index(secrets))).await.expect("server");
        println!("ready {}", running.webhook_addr.unwrap());
        std::io::stdout().flush().unwrap();
        // Until the parent closes stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await
        .unwrap();
    });
}

/// The example objects plus `secrets` Secrets of two keys each.
pub fn index(secrets: usize) -> Index {
    let mut index = Index::new(false);
    let text =
        std::fs::read_to_string(format!("{}/examples/admission/objects.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for doc in coder_guard::yaml::parse_documents(&text).0 {
        index.insert(&doc.value, "default");
    }
    for n in 0..secrets {
        let secret: Value = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("workspace-{n:05}-credentials"), "namespace": format!("team-{}", n % 50)},
            "data": {"token": "dG9rZW4tdmFsdWUtMTIzNDU2Nzg5MA==", "ca.crt": "LS0tLS1CRUdJTi0tLS0tCg=="}});
        index.insert(&secret, "default");
    }
    index
}
