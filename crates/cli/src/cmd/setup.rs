//! `edgepool setup`: apply `nats/` (streams and the shared consumer) idempotently.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::Global;
use crate::app;
use crate::config::Overrides;

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
    app::run(global, &Overrides::default(), "warn", |ctx| async move {
        let client = ctx.connect("edgepool-setup", false).await?;
        let js = async_nats::jetstream::new(client.clone());
        let report = edgepool_nats::apply(&js, edgepool_nats::SetupOptions { replicas: args.replicas })
            .await
            .map_err(anyhow::Error::from_boxed)
            .context("applying the definitions of nats/")?;
        app::close(client).await;
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
