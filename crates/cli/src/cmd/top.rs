//! `edgepool top`: a live terminal view of the fleet for when Grafana is not at hand. Refreshes
//! once a second from the fleet registry, the shared consumer, and a live subscription to
//! results (for end-to-end latency over the last few seconds).

use std::collections::VecDeque;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use time::OffsetDateTime;

use edgepool_sink::stats::percentile;
use edgepool_wire::ResultMessage;

use crate::config::Overrides;
use crate::{Global, app};

/// The window over which latency percentiles are computed.
const LATENCY_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Refresh interval.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub every: Duration,
    /// Print one frame of the view and exit (for scripts).
    #[arg(long)]
    pub once: bool,
}

type Samples = Arc<Mutex<VecDeque<(Instant, f64)>>>;

pub fn run(global: &Global, args: TopArgs) -> anyhow::Result<ExitCode> {
    app::run(global, &Overrides::default(), "warn", |ctx| async move {
        let shutdown = ctx.shutdown.clone();
        let client = ctx.connect("edgepool-top", false).await?;
        let js = async_nats::jetstream::new(client.clone());
        let samples: Samples = Arc::default();
        let mut sub = client.subscribe("detections.*").await?;
        let s2 = Arc::clone(&samples);
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                if let Ok(r) = serde_json::from_slice::<ResultMessage>(&m.payload)
                    && let Some(c) = r.captured_at
                {
                    let l = (OffsetDateTime::now_utc() - c).as_seconds_f64();
                    if let Ok(mut s) = s2.lock() {
                        s.push_back((Instant::now(), l));
                    }
                }
            }
        });
        loop {
            let status = super::status::collect(&js, Duration::from_millis(300)).await?;
            let (p50, p99, n) = {
                let mut s = samples.lock().map_err(|_| anyhow::anyhow!("latency samples poisoned"))?;
                while s.front().is_some_and(|(t, _)| t.elapsed() > LATENCY_WINDOW) {
                    s.pop_front();
                }
                let mut v: Vec<f64> = s.iter().map(|x| x.1).collect();
                v.sort_by(f64::total_cmp);
                (percentile(&v, 0.5), percentile(&v, 0.99), v.len())
            };
            let mut out = String::new();
            if !args.once {
                out.push_str("\x1b[2J\x1b[H");
            }
            out.push_str(&format!(
                "edgepool top — {}   (q: Ctrl-C)\n\n\
                 queue {} pending · {} held · {} idle pulls   in {:.2}/s   out {:.2}/s   capacity {:.2}/s\n",
                edgepool_wire::frame::format_time(OffsetDateTime::now_utc())
                    .unwrap_or_default()
                    .get(..19)
                    .unwrap_or(""),
                status.pending,
                status.ack_pending,
                status.waiting_pulls,
                status.publish_fps,
                status.fleet_fps,
                status.fleet_capacity_fps
            ));
            let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{:.0} ms", v * 1e3));
            out.push_str(&format!(
                "latency (last {}s, {n} results): p50 {}  p99 {}\n\n",
                LATENCY_WINDOW.as_secs(),
                ms(p50),
                ms(p99)
            ));
            out.push_str(&format!(
                "{:<28} {:<8} {:>8} {:>8} {:>7} {:>6}  {}\n",
                "WORKER", "ARCH", "SLOWDOWN", "FPS", "SHARE", "BUSY", "BUSY BAR"
            ));
            for w in &status.workers {
                let share = status.share.get(&w.id).copied().unwrap_or(0.0);
                let bar = "#".repeat((w.busy_ratio * 20.0).round() as usize);
                out.push_str(&format!(
                    "{:<28} {:<8} {:>7}x {:>8.2} {:>6.0}% {:>5.0}%  {bar}\n",
                    w.id,
                    w.arch,
                    w.slowdown,
                    w.fps,
                    share * 100.0,
                    w.busy_ratio * 100.0
                ));
            }
            if status.workers.is_empty() {
                out.push_str("(no workers registered)\n");
            }
            print!("{out}");
            let _ = std::io::stdout().flush();
            if args.once {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(args.every) => {}
                () = shutdown.cancelled() => break,
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
