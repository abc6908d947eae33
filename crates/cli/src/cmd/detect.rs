//! `edgepool detect`: run the detector on image files. (Being written.)

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DetectArgs {}

pub fn run(_args: DetectArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
