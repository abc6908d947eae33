//! `edgepool setup`: apply `nats/` (streams and the shared consumer) idempotently.

use std::process::ExitCode;

use crate::config::Overrides;
use crate::{Global, load_config, print_check, runtime, telemetry};

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Replicas of every stream (3 on a 3-node JetStream cluster; default: as in nats/, 1).
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &Global, args: SetupArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &Overrides::default())?;
    if global.check {
        return Ok(print_check(&cfg));
    }
    telemetry::init(&cfg.log, "warn");
    runtime()?.block_on(async {
        let client =
            cfg.nats.connect("edgepool-setup", false).await.map_err(|e| anyhow::anyhow!("connecting to NATS: {e}"))?;
        let js = async_nats::jetstream::new(client);
        let report = edgepool_wire::nats::apply(&js, edgepool_wire::nats::SetupOptions { replicas: args.replicas })
            .await
            .map_err(|e| anyhow::anyhow!("setup failed: {e}"))?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            for line in &report {
                println!("{line}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
