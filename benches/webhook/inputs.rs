//! The reviews the load sends, and how the policy answers each.

use super::*;

/// One review the load sends: an example of `examples/admission/`, or the same object as
/// kube-apiserver sends it.
pub struct Input {
    pub label: &'static str,
    pub hook: &'static str,
    pub body: Arc<Vec<u8>>,
}

/// The example reviews (`min`: the object as written, nothing else), then the same objects as
/// kube-apiserver sends them (`api`, see `captured`) when the e2e harness is available. Prints
/// each one's size and how the policy answers it: an `api` review is only a fair stand-in if
/// it gets the example's answer.
pub fn inputs(dir: &Path) -> Vec<Input> {
    let mut inputs: Vec<Input> =
        HOOKS.iter().map(|hook| Input { label: short(hook, "min"), hook, body: Arc::new(review(hook)) }).collect();
    match captured_reviews(dir) {
        Ok(bodies) => {
            for (hook, body) in HOOKS.iter().zip(bodies) {
                inputs.push(Input { label: short(hook, "api"), hook, body: Arc::new(body) });
            }
        }
        Err(e) => println!("NOTE: only the example reviews are measured: no review from kube-apiserver ({e})"),
    }
    let saved = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/webhook-reviews");
    std::fs::create_dir_all(&saved).expect("target/webhook-reviews");
    println!("reviews sent (policy's answer, in-process), saved in target/webhook-reviews/:");
    for input in &inputs {
        std::fs::write(saved.join(format!("{}.json", input.label.replace('/', "-"))), &*input.body)
            .expect("saved review");
        let got = answer(input.hook, &input.body);
        let example = &inputs.iter().find(|i| i.hook == input.hook).expect("an example per hook").body;
        let same = if got == answer(input.hook, example) { "" } else { "  WARNING: not the example's answer" };
        println!("  {:<8} {:>6} bytes  {}{same}", input.label, input.body.len(), describe(&got));
    }
    inputs
}

pub const HOOKS: [&str; 2] = ["validate", "mutate"];

/// The `api` reviews, captured by a child process (this binary again): the e2e harness's etcd
/// and kube-apiserver end with it, so they take no CPU from the measurement.
pub fn captured_reviews(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let out = dir.join("captured");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .env("CODER_GUARD_BENCH_CAPTURE", &out)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the capture: {e}"))?;
    let deadline = Instant::now() + CAPTURE_LIMIT;
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the capture took longer than {CAPTURE_LIMIT:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    if !status.success() {
        return Err(format!("the capture failed ({status}; its reason is printed above)"));
    }
    HOOKS
        .iter()
        .map(|hook| std::fs::read(out.join(format!("{hook}.json"))).map_err(|e| format!("captured {hook} review: {e}")))
        .collect()
}

/// The child of `captured_reviews`: captures and writes `DIR/<hook>.json`, or exits 1 with
/// the reason on stderr.
pub fn capture_into(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let examples: Vec<(&str, Vec<u8>)> = HOOKS.iter().map(|hook| (*hook, review(hook))).collect();
    let pairs: Vec<(&str, &[u8])> = examples.iter().map(|(h, b)| (*h, b.as_slice())).collect();
    let written = captured::reviews(&runtime, &pairs).and_then(|bodies| {
        HOOKS.iter().zip(bodies).try_for_each(|(hook, body)| {
            std::fs::write(dir.join(format!("{hook}.json")), body).map_err(|e| format!("{}: {e}", dir.display()))
        })
    });
    if let Err(e) = written {
        eprintln!("capture: {e}");
        std::process::exit(1);
    }
}

pub fn short(hook: &str, source: &str) -> &'static str {
    match (hook, source) {
        ("validate", "min") => "val/min",
        ("validate", _) => "val/api",
        (_, "min") => "mut/min",
        _ => "mut/api",
    }
}

/// The policy's answer to one review, without its uid and with the patch decoded.
pub fn answer(hook: &str, body: &[u8]) -> Value {
    use base64::Engine as _;
    use coder_guard::admission;
    use coder_guard::policy::Engine;
    let (h, engine, index) = (hook_of(hook), Engine::default(), index(0));
    let review = admission::decode(body).expect("a review");
    let eval = run_policy(&engine, &index, h, &review);
    let mut out: Value = serde_json::from_slice(&admission::respond(&review, h, &eval)).expect("an answer");
    let response = out["response"].as_object_mut().expect("a response");
    response.remove("uid");
    if let Some(Value::String(patch)) = response.get("patch") {
        let bytes = base64::engine::general_purpose::STANDARD.decode(patch).expect("base64 patch");
        let patch: Value = serde_json::from_slice(&bytes).expect("a JSON patch");
        response.insert("patch".into(), patch);
    }
    out["response"].take()
}

/// An answer in a few words: verdict, patch operations, warnings.
pub fn describe(response: &Value) -> String {
    let count = |field: &str| response[field].as_array().map_or(0, Vec::len);
    let verdict = if response["allowed"] == true { "allowed" } else { "denied" };
    format!("{verdict}, {} patch operation(s), {} warning(s)", count("patch"), count("warnings"))
}

pub fn review(hook: &str) -> Vec<u8> {
    let name = match hook_of(hook) {
        coder_guard::admission::Hook::Validate => "allow-provisioner-deployment.json",
        coder_guard::admission::Hook::Mutate => "mutate-provisioner-deployment.json",
    };
    std::fs::read(format!("{}/examples/admission/{name}", env!("CARGO_MANIFEST_DIR"))).expect("example review")
}
