//! `tunnelbroker agent`: glue over `tunnelbroker_core::agent`. The loop
//! polls at `--interval` until SIGTERM or SIGINT; each poll's news is one
//! line on stdout (JSON with `--json`), each failure one line on stderr,
//! and a failed poll never ends the agent. `--metrics ADDR` serves
//! `GET /metrics` from a thread (tiny_http: a kept HTTP/1.1 server, so
//! that request parsing, keep-alive and slow clients are not ours to get
//! right).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tunnelbroker_core::Broker;
use tunnelbroker_core::agent::{Agent, AgentOptions, InstanceControl, Metrics, PollReport};

use crate::args::AgentArgs;
use crate::output::{Failure, Output, warn};

/// Runs the agent on the broker in `dir`.
pub fn run(out: &Output, dir: &Path, args: &AgentArgs) -> Result<(), Failure> {
    let broker = Broker::open_for_agent(dir)?;
    for w in broker.open_warnings() {
        warn(w);
    }
    let mut options = AgentOptions::new();
    options.server = args.server.clone();
    options.dir = args.out.clone();
    options.run_dir = args.run_dir.clone();
    options.instances = match args.instances.as_str() {
        "systemd" => InstanceControl::Systemd,
        "report" => InstanceControl::Report,
        _ => InstanceControl::Auto,
    };
    let mut agent = Agent::new(broker, options)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| Failure::other(format!("cannot handle signal {signal}: {e}")))?;
    }
    let server = match args.metrics {
        Some(addr) => Some(serve_metrics(addr, agent.metrics(), Arc::clone(&stop))?),
        None => None,
    };
    if args.once {
        let report = agent.poll()?;
        return out.show(&Round::from(&report));
    }
    log(
        out,
        &format!(
            "agent for server {} of {} started (interval {:?})",
            agent.server(),
            dir.display(),
            args.interval
        ),
    );
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match agent.poll() {
            Ok(report) => {
                let round = Round::from(&report);
                if round.has_news() {
                    if out.is_json() {
                        out.print(&format!(
                            "{}\n",
                            serde_json::to_string(&round).unwrap_or_default()
                        ));
                    } else {
                        log(out, &round.to_string());
                    }
                }
            }
            Err(e) => warn(&format!("poll failed (the next one tries again): {e}")),
        }
        let left = args.interval.saturating_sub(started.elapsed());
        sleep_unless(&stop, left);
    }
    log(out, "agent stopped");
    drop(server);
    Ok(())
}

fn log(out: &Output, line: &str) {
    if !out.is_json() {
        for l in line.lines() {
            out.print(&format!("{}\n", tunnelbroker_core::flatten(l)));
        }
    }
}

/// Sleeps `d`, waking early when `stop` is set.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The metrics server's thread; it ends with the agent.
struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for MetricsServer {
    /// Stops the server thread (also when the agent ends without a signal:
    /// `--once`, or an error) and waits for it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Result<MetricsServer, Failure> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| Failure::other(format!("cannot serve metrics on {addr}: {e}")))?;
    let flag = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            let path = request.url().split('?').next().unwrap_or("");
            let response = if request.method() != &tiny_http::Method::Get {
                tiny_http::Response::from_string("only GET\n").with_status_code(405)
            } else if path == "/metrics" {
                let mut r = tiny_http::Response::from_string(metrics.encode());
                if let Ok(h) = tiny_http::Header::from_bytes(
                    &b"Content-Type"[..],
                    &b"text/plain; version=0.0.4; charset=utf-8"[..],
                ) {
                    r = r.with_header(h);
                }
                r
            } else {
                tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
            };
            let _ = request.respond(response);
        }
    });
    Ok(MetricsServer {
        stop,
        thread: Some(thread),
    })
}

/// What one poll did, for people and for `--json`.
#[derive(Debug, Serialize)]
struct Round {
    reconciled: bool,
    crl: Option<u64>,
    written: Vec<PathBuf>,
    removed: Vec<PathBuf>,
    ended: Vec<Ended>,
    started: Vec<String>,
    stopped: Vec<String>,
    notes: Vec<String>,
    sessions_started: usize,
    sessions_ended: usize,
    sessions_pruned: u64,
}

#[derive(Debug, Serialize)]
struct Ended {
    client: String,
    session: &'static str,
    summary: String,
}

impl Round {
    fn from(r: &PollReport) -> Self {
        Round {
            reconciled: r.reconciled,
            crl: r.crl,
            written: r.written.clone(),
            removed: r.removed.clone(),
            ended: r
                .ended
                .iter()
                .map(|(id, end)| Ended {
                    client: id.to_string(),
                    session: end.word(),
                    summary: end.summary(),
                })
                .collect(),
            started: r.started.clone(),
            stopped: r.stopped.clone(),
            notes: r.notes.clone(),
            sessions_started: r.sessions.map_or(0, |s| s.started),
            sessions_ended: r.sessions.map_or(0, |s| s.ended),
            sessions_pruned: r.pruned,
        }
    }

    fn has_news(&self) -> bool {
        self.crl.is_some()
            || !self.written.is_empty()
            || !self.removed.is_empty()
            || !self.ended.is_empty()
            || !self.started.is_empty()
            || !self.stopped.is_empty()
            || !self.notes.is_empty()
            || self.sessions_started > 0
            || self.sessions_ended > 0
            || self.sessions_pruned > 0
    }
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.reconciled {
            writeln!(f, "nothing changed")?;
        }
        if let Some(n) = self.crl {
            writeln!(f, "CRL {n} taken from the database")?;
        }
        for p in &self.written {
            writeln!(f, "wrote {}", p.display())?;
        }
        for p in &self.removed {
            writeln!(f, "removed {}", p.display())?;
        }
        for e in &self.ended {
            writeln!(f, "client {} is no longer active: {}", e.client, e.summary)?;
        }
        for s in &self.started {
            writeln!(f, "start openvpn-server@{s}")?;
        }
        for s in &self.stopped {
            writeln!(f, "stop openvpn-server@{s}")?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        if self.sessions_started > 0 || self.sessions_ended > 0 {
            writeln!(
                f,
                "sessions: {} started, {} ended",
                self.sessions_started, self.sessions_ended
            )?;
        }
        if self.sessions_pruned > 0 {
            writeln!(
                f,
                "pruned {} sessions past the retention",
                self.sessions_pruned
            )?;
        }
        if self.reconciled && !self.has_news() {
            writeln!(f, "in step with the database")?;
        }
        Ok(())
    }
}
