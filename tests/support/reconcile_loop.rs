//! The reconcile loop in-process against the harness's API server, on its own runtime thread.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use coder_guard::reconcile;

/// A running loop; stops when dropped (at most 10 s, as `serve` allows it).
pub struct Loop {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Loop {
    /// Starts the loop with the admin `kubeconfig` and `config`.
    pub fn start(kubeconfig: &Path, config: reconcile::Config) -> Loop {
        let kubeconfig = kubeconfig.to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async move {
                let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
                let options = kube::config::KubeConfigOptions::default();
                let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap();
                let client = kube::Client::try_from(client_config).unwrap();
                let (signal, mut signalled) = tokio::sync::watch::channel(false);
                let run = reconcile::run(client, config, reconcile::Metrics::unregistered(), async move {
                    let _ = signalled.wait_for(|s| *s).await;
                });
                let mut run = std::pin::pin!(run);
                tokio::select! {
                    () = &mut run => return,
                    _ = stopped => { let _ = signal.send(true); }
                }
                if tokio::time::timeout(Duration::from_secs(10), run).await.is_err() {
                    let _ = writeln!(std::io::stderr(), "the reconcile loop did not stop within 10s");
                }
            });
        });
        Loop { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
