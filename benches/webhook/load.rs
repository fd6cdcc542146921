//! The load: clients sending reviews back to back, in rounds, and the CPU time it costs.

use super::*;

/// One step: `conc` clients per server, each on its own keep-alive connection. The servers take
/// turns in `ROUNDS` slices of `step / ROUNDS`, so background load on the machine hits them
/// alike and the ratios stay meaningful.
pub async fn step_all(servers: &[&Server], hook: &str, body: &Arc<Vec<u8>>, conc: usize, step: Duration) -> Vec<Stats> {
    let mut prepared = Vec::new();
    for server in servers {
        let url = format!("https://{}/{hook}", server.webhook);
        let clients = warm_clients(server, &url, body, conc).await;
        prepared.push((server, url, clients, Tally::default()));
    }
    for round in 0..ROUNDS {
        // Reversed every other round: no server always follows the same one.
        let mut order: Vec<usize> = (0..prepared.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (server, url, clients, tally) = &mut prepared[i];
            let (server_before, loadgen_before) = (cpu_time(server.child.id()), cpu_time(std::process::id()));
            let started = Instant::now();
            let time = step / ROUNDS;
            let mut round = slice(url, clients, body, time, (time.as_secs_f64() * MAX_RATE) as usize).await;
            round.sort_by(f64::total_cmp);
            tally.round_p99.push(quantile(&round, 0.99));
            tally.latencies.extend(round);
            tally.elapsed += started.elapsed();
            tally.server_cpu += cpu_time(server.child.id()).saturating_sub(server_before);
            tally.loadgen_cpu += cpu_time(std::process::id()).saturating_sub(loadgen_before);
        }
    }
    prepared.into_iter().map(|(_, _, _, tally)| tally.stats(conc)).collect()
}

/// `conc` clients, each with its connection open and the code paths warm.
pub async fn warm_clients(server: &Server, url: &str, body: &Arc<Vec<u8>>, conc: usize) -> Vec<reqwest::Client> {
    let clients: Vec<reqwest::Client> = (0..conc).map(|_| server.client()).collect();
    for client in &clients {
        for _ in 0..(WARM_UP_REQUESTS / conc).max(2) {
            send(client, url, body).await;
        }
    }
    clients
}

/// Every client sends requests back to back until `time` is up or `max` requests in all are
/// sent; the latencies.
pub async fn slice(
    url: &str,
    clients: &[reqwest::Client],
    body: &Arc<Vec<u8>>,
    time: Duration,
    max: usize,
) -> Vec<f64> {
    let started = Instant::now();
    let per_client = max / clients.len();
    let tasks: Vec<_> = clients
        .iter()
        .map(|client| {
            let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    if started.elapsed() > time {
                        break;
                    }
                    let t = Instant::now();
                    send(&client, &url, &body).await;
                    latencies.push(t.elapsed().as_secs_f64() * 1e6);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

pub async fn send(client: &reqwest::Client, url: &str, body: &Arc<Vec<u8>>) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.as_ref().clone())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");
}

/// CPU time of every live thread of process `pid` (`/proc/PID/task/*/schedstat`, nanoseconds).
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Duration::ZERO };
    let nanos: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Pins every thread of `pid` (and the threads it starts later) to `cpu`; false if that failed.
pub fn pin(pid: u32, cpu: usize) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
