//! `edgepool sink`: results → dedupe → /metrics, /events, JSONL; and the live page with the
//! camera snapshots, MJPEG streams and the fleet (docs/view.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use edgepool_nats::Secret;
use edgepool_runtime::http::{HttpAuth, guard, probes_guarded};
use edgepool_sink::{Sink, SinkStats};

use crate::config::Overrides;
use crate::{Global, app};

#[derive(Debug, clap::Args)]
pub struct SinkArgs {
    /// Append every unique result as one JSON line to this file.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// Serve the live page (/), /cameras, /fleet, /events, /metrics, /healthz and /readyz here
    /// [default: `sink.listen`, 127.0.0.1:9090].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Durable consumer name on DETECTIONS (sinks with the same name share the work).
    #[arg(long)]
    pub durable: Option<String>,
    /// On first start, replay every stored result instead of new ones only.
    #[arg(long)]
    pub replay: bool,
}

impl SinkArgs {
    /// The config keys the given flags set.
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        let mut flags = Overrides::default();
        flags
            .path("sink.jsonl", self.jsonl.as_deref())
            .set("sink.listen", self.listen.map(|a| a.to_string()))
            .set("sink.durable", self.durable.clone());
        if self.replay {
            flags.set("sink.replay", Some(true));
        }
        flags
    }
}

pub fn run(global: &Global, args: SinkArgs) -> anyhow::Result<ExitCode> {
    app::run(global, &args.overrides(), "info", |ctx| async move {
        let registry = edgepool_runtime::metrics::role_registry();
        let sink = Sink::with_view(&registry, Arc::new(SinkStats::default()), ctx.cfg.sink.view())?;
        let auth = |t: &Option<Secret>| t.as_ref().and_then(|t| HttpAuth::new(t.expose(), "edgepool"));
        let (page_auth, metrics_auth) = (auth(&ctx.cfg.sink.token), auth(&ctx.cfg.sink.metrics_token));
        let protected = if page_auth.is_some() { " (token required)" } else { "" };
        let router =
            probes_guarded(registry.clone(), sink.readiness(), metrics_auth).merge(guard(sink.router(), page_auth));
        let bound = ctx.serve_yielding(ctx.cfg.sink.listen, router)?;
        eprintln!(
            "sink: live page on http://{bound}/{protected}, metrics on http://{bound}/metrics, live feed on \
             http://{bound}/events"
        );
        let client = ctx.connect("edgepool-sink", true).await?;
        let js = async_nats::jetstream::new(client.clone());
        let r = sink.run(js, ctx.cfg.sink.clone(), ctx.shutdown.clone()).await;
        app::close(client).await;
        r?;
        Ok(ExitCode::SUCCESS)
    })
}
