//! `kubicluster image build`.

use anyhow::Result;

use super::Ctx;
use crate::cli::{ImageAction, ImageArgs};
use crate::image;

pub fn run(ctx: &mut Ctx, args: &ImageArgs) -> Result<()> {
    let ImageAction::Build { force, spec } = &args.action;
    let (cluster, _) = ctx.cluster(spec)?;
    let out = cluster.image_path();
    ctx.printer.status(&format!("image: {}", out.display()));
    let built = image::build(out, *force, image::kernel_args(&cluster))?;
    let size = std::fs::metadata(out).map(|m| m.len() >> 20).unwrap_or(0);
    ctx.printer.status(&format!(
        "image {} ({size} MiB){}",
        if built { "built" } else { "exists" },
        if built { "" } else { "; --force rebuilds it" }
    ));
    if image::built_for_emulation(out) {
        ctx.printer.status(&format!(
            "image: for emulated (TCG) guests only: its kernel runs with {} (an emulated CPU does not speculate); KVM clusters refuse it",
            image::EMULATED_KERNEL_ARGS
        ));
    }
    Ok(())
}
