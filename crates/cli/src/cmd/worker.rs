//! `edgepool worker`: pull frames from the shared work queue, detect, publish results.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use edgepool_runtime::http::{Readiness, probes};
use edgepool_worker::models::{ModelName, ModelSource};
use edgepool_worker::{ARCH, Engine, Worker, WorkerMetrics, load_engine};

use crate::app::{self, Stopped};
use crate::config::Overrides;
use crate::{Global, load_config, print_check};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Worker id, unique in the fleet (default: host name plus a random suffix).
    #[arg(long)]
    pub id: Option<String>,
    /// Device label shown in results and the fleet view (e.g. pi4, laptop).
    #[arg(long)]
    pub label: Option<String>,
    /// Inference slots: frames held at once. The worker never holds more (no prefetch).
    #[arg(long)]
    pub slots: Option<usize>,
    /// Threads per inference (tract's matrix-multiply pool).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Device emulation for tests and demos: behave like a device this many times slower.
    /// Reported in results and metrics; never use it to describe real hardware.
    #[arg(long)]
    pub slowdown: Option<f64>,
    /// The ONNX model file (default: the model cache, see `cargo xtask model`).
    #[arg(long, conflicts_with = "model_name")]
    pub model: Option<PathBuf>,
    /// Load the model by name from the NATS Object Store bucket MODELS instead of a file, cache
    /// it in `model.dir`, and hot-swap when a new version is pushed [env: EDGEPOOL_MODEL_NAME].
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<ModelName>,
    /// Serve /metrics, /healthz and /readyz here (e.g. 0.0.0.0:9100).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// The model named by `model.name`, fetched from the MODELS bucket (or the verified cache in
/// `model.dir`) and loaded; a background task hot-swaps it on new versions until `shutdown`.
pub async fn model_from_nats(
    js: &async_nats::jetstream::Context,
    cfg: &crate::config::Config,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Engine> {
    let name = cfg.model.name.clone().context("model.name is not set")?;
    if cfg.model.path.is_some() {
        tracing::warn!("model.path is ignored: model.name is set, so the model comes from NATS");
    }
    let dir = cfg.model.dir.clone().unwrap_or_else(edgepool_detector::default_model_dir);
    let source = ModelSource::open(js, name.clone(), dir, cfg.detector.clone()).await?;
    let (live, hot_swap) = source.start().await.with_context(|| format!("loading model {name} from NATS"))?;
    tokio::spawn(hot_swap.run(shutdown));
    Ok(Engine::Live(live))
}

impl WorkerArgs {
    /// The config keys the given flags set.
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        let mut flags = Overrides::default();
        flags
            .set("worker.id", self.id.clone())
            .set("worker.label", self.label.clone())
            .set("worker.slots", self.slots.map(|v| v as u64))
            .set("worker.slowdown", self.slowdown)
            .set("worker.listen", self.listen.map(|a| a.to_string()))
            .set("detector.threads", self.threads.map(|v| v as u64))
            .path("model.path", self.model.as_deref())
            .set("model.name", self.model_name.clone().map(String::from));
        flags
    }
}

pub fn run(global: &Global, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &args.overrides())?;
    if global.check {
        return Ok(print_check(&cfg));
    }
    // A model by name needs NATS, so it is fetched once connected; a file is loaded right away.
    let engine = match &cfg.model.name {
        None => Some(load_engine(&cfg.model.resolved_path(), &cfg.detector)?),
        Some(_) => None,
    };
    app::run_with(cfg, "info", |ctx| async move {
        let (cfg, shutdown) = (&ctx.cfg, ctx.shutdown.clone());
        let registry = edgepool_runtime::metrics::role_registry();
        let id = cfg.worker.id.clone().unwrap_or_else(edgepool_worker::default_worker_id);
        let mut wcfg = cfg.worker.clone();
        wcfg.id = Some(id.clone());
        let metrics = WorkerMetrics::register(&registry, &id, ARCH)?;
        edgepool_worker::device::register(&registry, &id, ARCH, &wcfg)?;
        let ready = Readiness::default();
        let in_flight = metrics.in_flight.clone();
        ctx.abandons.set(move || {
            format!("{} frame(s) in flight (JetStream hands them to another worker after ack_wait)", in_flight.get())
        });
        // Probes come up before NATS so Kubernetes sees a live process while it waits.
        if let Some(addr) = wcfg.listen {
            let bound = ctx.serve(addr, probes(registry.clone(), ready.clone())).await?;
            tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
        }
        let client = ctx.connect(&format!("edgepool-worker-{id}"), true).await?;
        let js = async_nats::jetstream::new(client.clone());
        // Binding can wait on a broker that went away after the connection: a signal ends it.
        let bind = async {
            let engine = match engine {
                Some(e) => e,
                None => model_from_nats(&js, cfg, shutdown.clone()).await?,
            };
            anyhow::Ok(Worker::new(js.clone(), engine, wcfg, metrics).await?)
        };
        let worker = tokio::select! {
            w = bind => w?,
            () = shutdown.cancelled() => return Err(Stopped.into()),
        };
        ready.set(true);
        let report = Box::pin(worker.run(shutdown)).await;
        ready.set(false);
        app::close(client).await;
        tracing::info!(?report, "worker finished");
        Ok(ExitCode::SUCCESS)
    })
}
