//! `kubicluster artifacts build|dir`: the cluster's binaries and images built from Go modules
//! (see [`crate::artifacts::build`]).

use anyhow::Result;

use super::Ctx;
use crate::artifacts::build;
use crate::cli::{ArtifactsAction, ArtifactsArgs};
use crate::error::Failure;
use crate::spec::Cluster;
use crate::ui::Printer;

pub fn run(ctx: &mut Ctx, args: &ArtifactsArgs) -> Result<()> {
    match &args.action {
        ArtifactsAction::Build {
            source,
            force,
            spec,
        } => {
            let (cluster, _) = ctx.cluster(spec)?;
            if let Some(s) = source
                && !s.is_dir()
            {
                return Err(Failure::bad_input(format!(
                    "--source {}: not a directory",
                    s.display()
                ))
                .hint("give the root of a k8s.io/kubernetes checkout")
                .into());
            }
            ensure(ctx.printer, &cluster, ctx.env, source.clone(), *force).map(|_| ())
        }
        ArtifactsAction::Dir { spec } => {
            let (cluster, _) = ctx.cluster(spec)?;
            let set = set_of(&cluster)?;
            let dir = build::output_dir(&build::cache_dir(ctx.env), set.kubernetes);
            if !build::verify_dir(&dir)? {
                return Err(Failure::new(format!(
                    "no complete build of kubernetes v{} in {}",
                    set.kubernetes,
                    dir.display()
                ))
                .hint("run `kubicluster artifacts build`")
                .into());
            }
            ctx.printer.result(&dir.display().to_string());
            Ok(())
        }
    }
}

/// The pinned build set of the cluster's Kubernetes version, or a bad-input error naming them.
pub fn set_of(cluster: &Cluster) -> Result<&'static build::BuildSet> {
    let v = cluster.kubernetes.version.to_string();
    build::set_for(&v).ok_or_else(|| {
        Failure::bad_input(format!(
            "kubernetes {v} has no pinned build (its Go module and go.sum are not in this kubicluster)"
        ))
        .hint(format!(
            "choose one of {} with --kubernetes-version, or build from a checkout with --source DIR",
            build::versions()
        ))
        .into()
    })
}

/// The build the cluster uses (`--artifacts build`): built or reused in the cache when
/// `artifacts.dir` is the cache's, used as it is when the user named another directory that
/// holds a complete build (every file its SHA256SUMS lists, with that digest), refused when
/// that directory does not.
pub fn ensure_for(
    printer: &mut Printer,
    cluster: &Cluster,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<()> {
    let set = set_of(cluster)?;
    let cached = build::output_dir(&build::cache_dir(env), set.kubernetes);
    let dir = cluster.artifacts.build_dir();
    if dir == cached {
        return ensure(printer, cluster, env, None, false).map(|_| ());
    }
    if build::verify_dir(dir)? {
        printer.status(&format!(
            "artifacts: the build in {} (every file matches its SHA256SUMS)",
            dir.display()
        ));
        return Ok(());
    }
    Err(Failure::bad_input(format!(
        "spec.artifacts.dir {} holds no complete build of kubernetes v{} (a SHA256SUMS and every file it lists)",
        dir.display(),
        set.kubernetes
    ))
    .hint(format!(
        "run `kubicluster artifacts build` (it builds into {}) and leave artifacts.dir unset, or point it at such a build",
        cached.display()
    ))
    .into())
}

/// Build (or reuse) the cluster's artifacts, printing what was built and how long it took.
pub fn ensure(
    printer: &mut Printer,
    cluster: &Cluster,
    env: &dyn Fn(&str) -> Option<String>,
    source: Option<std::path::PathBuf>,
    force: bool,
) -> Result<std::path::PathBuf> {
    let set = set_of(cluster)?;
    let req = build::Request {
        set,
        cache: build::cache_dir(env),
        source,
        force,
    };
    printer.status(&format!(
        "artifacts: kubernetes v{}, etcd v{}, crictl v{}, CoreDNS v{} (Go modules)",
        set.kubernetes, set.etcd, set.crictl, set.coredns
    ));
    let t = std::time::Instant::now();
    let out = build::build(&req, &mut |line| printer.status(&format!("  {line}")))?;
    for n in &out.notes {
        printer.status(&format!("  note: {n}"));
    }
    let total: u64 = out.files.iter().map(|(_, s)| s).sum();
    printer.status(&format!(
        "artifacts {} in {}: {} files, {} MiB{}",
        if out.reused { "reused" } else { "built" },
        out.dir.display(),
        out.files.len(),
        total >> 20,
        if out.reused {
            " (complete, digests match SHA256SUMS; --force rebuilds)".to_string()
        } else {
            format!(" in {:.0} s", t.elapsed().as_secs_f64())
        }
    ));
    Ok(out.dir)
}
