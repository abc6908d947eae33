//! `edgepool gateway`: the pool as a DeepStack / CodeProject.AI object-detection server, for the
//! NVRs and home-automation tools that already speak that API (docs/integrations.md).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use edgepool_gateway::deepstack::{self, Metrics};
use edgepool_gateway::{GatewayConfig, Pool};
use edgepool_runtime::http::{HttpAuth, Readiness, probes_guarded};
use edgepool_wire::CameraId;

use crate::config::Overrides;
use crate::{Global, app};

#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// Serve the API (POST /v1/vision/detection, ...), /metrics, /healthz and /readyz here
    /// [default: `gateway.listen`, 127.0.0.1:32168, CodeProject.AI's port].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The longest a request waits for its result, e.g. 2s [default: `gateway.timeout`, 10s].
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Requests waiting at once; one more gets 503 at once [default: `gateway.max_in_flight`, 32].
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Also serve Frigate's zmq detector here: tcp://HOST:PORT or ipc:///PATH [default:
    /// `gateway.zmq`, off].
    #[arg(long, value_name = "ENDPOINT")]
    pub zmq: Option<String>,
}

impl GatewayArgs {
    /// The config keys the given flags set.
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        let mut flags = Overrides::default();
        flags
            .set("gateway.listen", self.listen.map(|a| a.to_string()))
            .set("gateway.timeout", self.timeout.clone())
            .set("gateway.max_in_flight", self.max_in_flight)
            .set("gateway.zmq", self.zmq.clone());
        flags
    }
}

pub fn run(global: &Global, args: GatewayArgs) -> anyhow::Result<ExitCode> {
    app::run(global, &args.overrides(), "info", |ctx| async move {
        let cfg: GatewayConfig = ctx.cfg.gateway.clone();
        cfg.validate()?;
        let camera = CameraId::new(cfg.camera.clone())?;
        let registry = edgepool_runtime::metrics::role_registry();
        let metrics = Metrics::register(&registry)?;
        let ready = Readiness::default();
        let pool = Arc::new(OnceLock::new());
        let metrics_auth = cfg.metrics_token.as_ref().and_then(|t| HttpAuth::new(t.expose(), "edgepool"));
        let keys = if cfg.keys().next().is_some() { " (API key required)" } else { "" };
        let router = probes_guarded(registry, ready.clone(), metrics_auth).merge(deepstack::router(
            pool.clone(),
            cfg.clone(),
            metrics.clone(),
        ));
        let bound = ctx.serve(cfg.listen, router).await?;
        eprintln!("gateway: DeepStack / CodeProject.AI API on http://{bound}/v1/vision/detection{keys}");
        if let Some(endpoint) = &cfg.zmq {
            let stop = ctx.shutdown.clone();
            let bound = edgepool_gateway::zmq::serve(endpoint, pool.clone(), cfg.clone(), metrics, stop).await?;
            eprintln!("gateway: Frigate zmq detector on {bound}");
        }

        let client = ctx.connect("edgepool-gateway", true).await?;
        let _ = pool.set(Pool::start(client.clone(), camera, cfg.priority).await?);
        // Ready while the broker is connected: requests then have somewhere to go.
        let watch = {
            let (client, ready, stop) = (client.clone(), ready.clone(), ctx.shutdown.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    ready.set(client.connection_state() == async_nats::connection::State::Connected);
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        () = stop.cancelled() => {}
                    }
                }
                ready.set(false);
            })
        };
        ctx.shutdown.cancelled().await;
        let _ = watch.await;
        app::close(client).await;
        Ok(ExitCode::SUCCESS)
    })
}
