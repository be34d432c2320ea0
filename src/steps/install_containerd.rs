//! `install_containerd` — containerd with its config in the schema of the installed version
//! (`version = 3` for 2.x, `version = 2` for 1.7), systemd cgroups, the pinned sandbox image,
//! runc and — where the worker can run it — kata (`io.containerd.kata.v2`) as runtimes, CNI
//! from `/opt/cni/bin` + `/etc/cni/net.d`; then the offline images (`spec.images`) imported
//! into the `k8s.io` namespace, the sandbox image first.
//!
//! Kata needs KVM inside the worker (nested virtualisation) and its shim. Where either is
//! missing (always under TCG), the step says so once for that worker and runc is that worker's
//! default runtime; the `kata` RuntimeClass only selects workers labelled `kubicluster.io/kata`.

use crate::engine::StepId;
use anyhow::{Result, bail};

use crate::engine::{Blob, Cx, Desired, Fact, FactQuery, GuardedCmd, Step, UnitSpec};
use crate::host::Cmd;
use crate::render;
use crate::spec::{Cluster, Node, Runtime};

pub struct InstallContainerd;

pub const UNIT: &str = "containerd.service";
pub const CONFIG: &str = "/etc/containerd/config.toml";
const KATA_SHIM: &str = "/opt/kata/bin/containerd-shim-kata-v2";
const IMAGE_CACHE: &str = "/var/cache/kubicluster/images";
/// Shell prelude of the images' guard: `$1` is ctr; the images containerd has, listed once, and
/// `has NAME` (no process per name: emulated guests fork slowly).
const IMAGES_LISTED: &str = r#"ctr="$1"; shift
have="
$("$ctr" -n k8s.io images ls -q 2>/dev/null)
"
has() { case "$have" in *"
$1
"*) return 0 ;; esac; return 1; }"#;

/// Can kata run on this worker? `Err` says why not. Read-only. Without a connection (`render`)
/// the answer is "yes if asked for", since nothing can be checked.
pub fn kata_usable(cx: &Cx, node: &Node) -> Result<std::result::Result<(), String>> {
    if cx.cluster.containerd.default_runtime != Runtime::Kata {
        return Ok(Err("containerd.defaultRuntime is runc".into()));
    }
    if !cx.hosts.contains_key(&node.name) {
        return Ok(Ok(()));
    }
    Ok(match cx.fact_of(&kata_check(node))? {
        Fact::Holds => Ok(()),
        Fact::Not(why) => Err(why),
    })
}

/// The fact [`kata_usable`] reads, when it reads one.
pub fn kata_facts(cx: &Cx, node: &Node) -> Vec<FactQuery> {
    let asked = cx.cluster.containerd.default_runtime == Runtime::Kata;
    if asked && cx.hosts.contains_key(&node.name) {
        vec![kata_check(node)]
    } else {
        Vec::new()
    }
}

/// Why kata cannot run on `node` (empty: it can): /dev/kvm, the shim, kata's own check.
fn kata_check(node: &Node) -> FactQuery {
    FactQuery {
        key: format!("kata:{}", node.name),
        node: node.name.clone(),
        cmd: Cmd::script(
            r#"[ -c /dev/kvm ] || { echo "no /dev/kvm in this VM (nested virtualisation is off, or the VM runs under TCG)"; exit 1; }
[ -x "$1" ] || { echo "the kata shim $1 is not installed (unpack kata-static into /opt/kata)"; exit 1; }
if [ -x /opt/kata/bin/kata-runtime ] && ! out=$(/opt/kata/bin/kata-runtime check --no-network-checks 2>&1); then
  echo "kata-runtime check failed: $(printf '%s' "$out" | tail -n 1)"; exit 1
fi"#,
            [KATA_SHIM],
        ),
        read: |ok, out| {
            Fact::check(ok, || match out.trim() {
                "" => "the kata check failed".into(),
                why => why.to_string(),
            })
        },
    }
}

#[derive(serde::Serialize)]
struct Ctx {
    cluster: String,
    version: String,
    sandbox_image: String,
    default_runtime: String,
    runc: String,
    kata: bool,
    bin_dirs_list: bool,
    cni_bin_dirs: Vec<String>,
}

/// (major, minor) of the containerd that will run: what is installed, else the spec's version.
fn containerd_version(cx: &Cx) -> (String, u32, u32) {
    let v = cx
        .inputs
        .artifact("containerd")
        .and_then(|p| p.version())
        .unwrap_or_else(|| cx.cluster.versions.containerd.to_string());
    let mut it = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (v, major, minor)
}

pub fn ctr(cx: &Cx) -> String {
    format!("{}/ctr", super::bin_dir(cx, "containerd"))
}

impl Step for InstallContainerd {
    fn id(&self) -> StepId {
        StepId::InstallContainerd
    }

    /// This node's files and units only: it runs while other nodes are still on earlier steps.
    fn node_local(&self) -> bool {
        true
    }

    fn artifacts(&self, _cluster: &Cluster) -> Vec<&'static str> {
        vec!["containerd"]
    }

    fn targets<'c>(&self, cluster: &'c Cluster) -> Vec<&'c Node> {
        cluster.workers().collect()
    }

    fn facts(&self, cx: &Cx, node: &Node) -> Vec<FactQuery> {
        kata_facts(cx, node)
    }

    fn desired(&self, cx: &Cx, node: &Node) -> Result<Desired> {
        let c = &cx.cluster;
        let mut want = Desired::default();
        super::require_binary(cx, "containerd", "containerd is")?;
        want.dir("/etc/containerd", 0o755);
        super::install_cni::cni_dirs(&mut want);
        super::install_artifact(&mut want, cx.inputs.artifact("containerd"), &[UNIT]);
        let kata = kata_usable(cx, node)?;
        if let Err(why) = &kata
            && c.containerd.default_runtime == Runtime::Kata
        {
            want.note("kata", format!("{why}; runc is the default runtime here"));
        }
        let (version, major, minor) = containerd_version(cx);
        let ctx = Ctx {
            cluster: c.name.clone(),
            version: version.clone(),
            sandbox_image: c.containerd.sandbox_image.clone(),
            default_runtime: if kata.is_ok() { "kata" } else { "runc" }.into(),
            runc: super::install_runc::runc_path(cx),
            kata: kata.is_ok(),
            bin_dirs_list: (major, minor) >= (2, 1),
            cni_bin_dirs: vec!["/opt/cni/bin".into()],
        };
        let template = if major >= 2 {
            "worker/containerd-config-v3.toml.j2"
        } else {
            "worker/containerd-config-v2.toml.j2"
        };
        want.file(
            CONFIG,
            Blob::new(render::render(template, &ctx)?),
            0o644,
            &[UNIT],
        );
        if kata.is_ok() {
            want.command(GuardedCmd {
                what: "put the kata shim on containerd's PATH".into(),
                check: Cmd::script(
                    r#"[ "$(readlink /usr/local/bin/containerd-shim-kata-v2)" = "$1" ]"#,
                    [KATA_SHIM],
                ),
                run: Cmd::new([
                    "ln",
                    "-sfn",
                    KATA_SHIM,
                    "/usr/local/bin/containerd-shim-kata-v2",
                ]),
                restarts: vec![],
                after_units: false,
            });
        }
        want.unit(UnitSpec::started(
            UNIT,
            Blob::new(render::render(
                "worker/containerd.service.j2",
                &serde_json::json!({
                    "cluster": c.name,
                    "bin_dir": super::bin_dir(cx, "containerd"),
                }),
            )?),
        ));
        // Offline images, after containerd runs; the sandbox image first.
        let ctr = ctr(cx);
        let mut images: Vec<&super::ImageInput> = cx.inputs.images.iter().collect();
        images.sort_by_key(|i| !i.names.contains(&c.containerd.sandbox_image));
        if !images.is_empty() {
            want.dir("/var/cache/kubicluster", 0o755)
                .dir(IMAGE_CACHE, 0o755);
        }
        // One guard for all of them: `ctr` is a large Go binary, slow to start in an emulated
        // guest, so the images are listed once; an archive is uploaded only when an import runs,
        // and only archives whose images are missing are imported.
        if !images.is_empty() {
            let what = format!(
                "import {}",
                images
                    .iter()
                    .map(|i| format!("{} ({})", i.file_name, i.names.join(", ")))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut names = vec![ctr.clone()];
            let mut archives = vec![ctr.clone()];
            for img in &images {
                let path = format!("{IMAGE_CACHE}/{}", img.file_name);
                want.file(&path, img.blob.clone(), 0o644, &[]);
                want.files.last_mut().expect("pushed").payload_of = Some(what.clone());
                names.extend(img.names.iter().cloned());
                archives.push(format!("{path}|{}", img.names.join(" ")));
            }
            want.command(GuardedCmd {
                what,
                check: Cmd::script(&format!("{IMAGES_LISTED}\nfor n in \"$@\"; do has \"$n\" || exit 1; done"), names),
                run: Cmd::script(
                    &format!(
                        "{IMAGES_LISTED}\nfor a in \"$@\"; do\n  missing=0; for n in ${{a#*|}}; do has \"$n\" || missing=1; done\n  [ $missing = 0 ] || \"$ctr\" -n k8s.io images import \"${{a%%|*}}\" || exit 1\ndone"
                    ),
                    archives,
                ),
                restarts: vec![],
                after_units: true,
            });
        }
        Ok(want)
    }

    /// containerd answers and its CRI plugin loaded (what kubelet talks to).
    fn verify(&self, cx: &Cx, node: &Node) -> Result<()> {
        let o = cx.host(&node.name)?.run(&Cmd::script(
            r#""$1" plugins ls | awk '$1 == "io.containerd.grpc.v1" && $2 == "cri" { print $NF }'"#,
            [ctr(cx)],
        ))?;
        let status = o.stdout_text();
        if !o.ok() || status.trim() != "ok" {
            bail!(
                "containerd's CRI plugin is not loaded (ctr plugins ls: {:?}; {}); see journalctl -u containerd on {}",
                status.trim(),
                o.tail(3),
                node.name
            );
        }
        Ok(())
    }
}
