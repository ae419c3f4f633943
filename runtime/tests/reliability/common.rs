//! Watchdogs and child processes for the reliability suite.

use knpu::{Device, Stream};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The environment variable that makes this test binary run one case as a child.
pub const CASE_ENV: &str = "KNPU_RELIABILITY_CASE";

/// Where each thread of a bounded part is: the call it is in, for the watchdog's report.
#[derive(Clone)]
pub struct Progress {
    labels: Arc<Mutex<BTreeMap<String, String>>>,
    key: String,
}

impl Progress {
    /// Notes that this thread is now in `call`.
    pub fn at(&self, call: impl Into<String>) {
        self.labels.lock().insert(self.key.clone(), call.into());
    }

    /// A progress slot for another thread of the same part.
    pub fn child(&self, key: impl Into<String>) -> Progress {
        Progress {
            labels: self.labels.clone(),
            key: key.into(),
        }
    }
}

/// Runs `f` on its own thread and fails the test, naming the call every thread was in, if it
/// does not finish within `secs` seconds. A panic of `f` is the test's panic.
pub fn bounded<T: Send + 'static>(
    part: &str,
    secs: u64,
    f: impl FnOnce(&Progress) -> T + Send + 'static,
) -> T {
    let labels = Arc::new(Mutex::new(BTreeMap::new()));
    let p = Progress {
        labels: labels.clone(),
        key: "main".into(),
    };
    p.at("(starting)");
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("bounded-{part}"))
        .spawn(move || {
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| f(&p)));
            let _ = tx.send(r);
        })
        .expect("spawn a bounded part");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => {
            let where_: Vec<String> = labels
                .lock()
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            panic!(
                "watchdog: `{part}` did not finish within {secs} s; stuck in [{}]",
                where_.join("; ")
            )
        }
    }
}

/// The case this process runs as a child, if it is one.
pub fn child_case() -> Option<String> {
    std::env::var(CASE_ENV).ok()
}

/// What a child run of one case gave.
pub struct ChildRun {
    pub ok: bool,
    pub output: String,
}

/// Re-runs this test binary's test `test` (its full path) with `case` selected, extra
/// environment `env`, killing it after `secs` seconds.
pub fn run_child(test: &str, case: &str, env: &[(&str, &str)], secs: u64) -> ChildRun {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE_ENV, case)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn a child test process");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().expect("poll the child") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().ok();
    let text = out
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    match status {
        None => ChildRun {
            ok: false,
            output: format!("case `{case}` hung: killed after {secs} s\n{text}"),
        },
        Some(s) => ChildRun {
            ok: s.success() && text.contains("test result: ok. 1 passed"),
            output: format!("case `{case}` exited with {s}\n{text}"),
        },
    }
}

/// Runs `case` in a child and fails with its output unless it passed.
pub fn expect_child_passes(test: &str, case: &str, env: &[(&str, &str)], secs: u64) {
    let r = run_child(test, case, env, secs);
    assert!(r.ok, "{}", r.output);
}

/// Deterministic test data.
pub fn data(seed: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 * 0.125 - 60.0)
        .collect()
}

/// Device 0 and a new stream on it: where most cases start.
pub fn device_and_stream() -> (Device, Stream) {
    let d = knpu::device(0).unwrap();
    let s = Stream::new(&d).unwrap();
    (d, s)
}

/// Device 0 and two new streams on it: the cases that order work across streams.
pub fn device_and_two_streams() -> (Device, Stream, Stream) {
    let (d, a) = device_and_stream();
    let b = Stream::new(&d).unwrap();
    (d, a, b)
}
