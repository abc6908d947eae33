//! `edgepool watch`: tail detection results in the terminal (a plain NATS subscriber).

use std::process::ExitCode;

use futures::StreamExt;

use edgepool_wire::{CameraId, ResultMessage, Status};

use crate::config::Overrides;
use crate::{Global, app};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Only this camera's results.
    #[arg(long)]
    pub camera: Option<String>,
    /// Print each result as its JSON line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &Global, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let subject = match &args.camera {
        Some(c) => format!("detections.{}", CameraId::new(c.clone())?),
        None => "detections.*".to_owned(),
    };
    app::run(global, &Overrides::default(), "warn", |ctx| async move {
        let shutdown = ctx.shutdown.clone();
        let client = ctx.connect("edgepool-watch", false).await?;
        let mut sub = client.subscribe(subject.clone()).await?;
        eprintln!("watching {subject} (Ctrl-C to stop)");
        loop {
            let msg = tokio::select! {
                m = sub.next() => m,
                () = shutdown.cancelled() => None,
            };
            let Some(msg) = msg else { break };
            if args.json {
                println!("{}", String::from_utf8_lossy(&msg.payload));
                continue;
            }
            match serde_json::from_slice::<ResultMessage>(&msg.payload) {
                Ok(r) => println!("{}", line(&r)),
                Err(e) => eprintln!("{}: not a result message: {e}", msg.subject),
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One human line per result.
#[must_use]
pub fn line(r: &ResultMessage) -> String {
    let seq = r.seq.map_or_else(|| "-".to_owned(), |s| s.to_string());
    let what = match r.status {
        Status::Ok if r.detections.is_empty() => "nothing".to_owned(),
        Status::Ok => r.detections.iter().map(|d| format!("{} {:.2}", d.label, d.score)).collect::<Vec<_>>().join(", "),
        Status::Stale => format!("stale after {:.0} ms in queue", r.timings.queue_wait_ms),
        Status::Error => r.error.as_ref().map_or_else(String::new, |e| format!("error {}: {}", e.kind, e.message)),
    };
    format!("{:<16} seq {:<18} {:<22} {:>7.1} ms  {}", r.camera, seq, r.worker, r.timings.total_ms, what)
}
