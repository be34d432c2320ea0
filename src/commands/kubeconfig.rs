//! `kubicluster kubeconfig`: hand out the admin kubeconfig made by `cnc`.

use anyhow::Result;

use super::Ctx;
use crate::cli::KubeconfigArgs;
use crate::error::Failure;
use crate::fsutil;

pub fn run(ctx: &mut Ctx, args: &KubeconfigArgs) -> Result<()> {
    let (cluster, _) = ctx.cluster(&args.spec)?;
    let path = cluster.certs_dir().join("admin.kubeconfig");
    let Some(data) = fsutil::read_optional(&path)? else {
        return Err(Failure::new(format!("{} does not exist", path.display()))
            .hint("run `kubicluster cnc` (with the same cluster file and flags) first")
            .into());
    };
    match &args.output {
        Some(out) => {
            fsutil::write_atomic(out, &data, fsutil::SECRET)?;
            ctx.printer.status(&format!(
                "wrote {} (mode 0600); use it with: export KUBECONFIG={}",
                out.display(),
                out.display()
            ));
        }
        None => ctx.printer.result(&String::from_utf8_lossy(&data)),
    }
    Ok(())
}
