//! `edgepool model push | list`: models in the NATS Object Store bucket `MODELS`, which workers
//! load by name (`model.name`) and hot-swap. See docs/models.md.

use std::path::PathBuf;
use std::process::ExitCode;

use edgepool_worker::models::{self, ModelName, PushChange};

use crate::config::Overrides;
use crate::{Global, app};

#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Store an ONNX model in the bucket under NAME, with its sha256 and size. Pushing the bytes
    /// NAME already holds writes nothing; other bytes become a new version that running workers
    /// hot-swap to.
    Push(PushArgs),
    /// List the models in the bucket.
    List(ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The ONNX model file.
    pub file: PathBuf,
    /// The name workers select it by (`model.name`, EDGEPOOL_MODEL_NAME, `--model-name`).
    #[arg(long)]
    pub name: ModelName,
    /// Replicas of the bucket when this push creates it. Default: as many as the FRAMES stream
    /// has (3 after `edgepool setup --replicas 3`), else 1.
    #[arg(long)]
    pub replicas: Option<usize>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &Global, command: ModelCommand) -> anyhow::Result<ExitCode> {
    if let ModelCommand::Push(a) = &command {
        anyhow::ensure!(global.check || a.file.is_file(), "{} is not a file", a.file.display());
    }
    app::run(global, &Overrides::default(), "warn", |ctx| async move {
        let client = ctx.connect("edgepool-model", false).await?;
        let js = async_nats::jetstream::new(client.clone());
        match command {
            ModelCommand::Push(a) => {
                let replicas = match a.replicas {
                    Some(r) => r,
                    // Models are as critical as frames: without one no worker starts.
                    None => match js.get_stream(edgepool_nats::FRAMES).await {
                        Ok(s) => s.cached_info().config.num_replicas,
                        Err(_) => 1,
                    },
                };
                let pushed = models::push(&js, &a.file, &a.name, replicas).await?;
                if a.json {
                    println!("{}", serde_json::to_string(&pushed)?);
                } else {
                    let what = match &pushed.change {
                        PushChange::Created => "new".to_owned(),
                        PushChange::Updated { previous: Some(p) } => format!("new version (was sha256 {p})"),
                        PushChange::Updated { previous: None } => "new version".to_owned(),
                        PushChange::Unchanged => "unchanged (same bytes already stored)".to_owned(),
                    };
                    println!(
                        "{}: {what}\n  sha256  {}\n  size    {} bytes\n  version {}",
                        pushed.name, pushed.sha256, pushed.size, pushed.version
                    );
                }
            }
            ModelCommand::List(a) => {
                let list = models::list(&js).await?;
                if a.json {
                    println!("{}", serde_json::to_string(&list)?);
                } else if list.is_empty() {
                    println!("no models in bucket {}", models::BUCKET);
                } else {
                    println!("{:<32} {:>12}  sha256", "name", "bytes");
                    for m in &list {
                        let digest = m.sha256.as_deref().unwrap_or("- (not pushed by edgepool; workers refuse it)");
                        println!("{:<32} {:>12}  {digest}", m.name, m.size);
                    }
                }
            }
        }
        let _ = client.flush().await;
        Ok(ExitCode::SUCCESS)
    })
}
