//! The original kubicluster's single-dash flags (`-c NAME,IP,IP`, `-kv=1.32.3`, `-ndev`, `-f`, ...),
//! translated to long flags before clap parses, so that `-ndev` is never read as a bundle of `-n
//! -d -e -v` and old command lines keep working. Tokens after `--` are left alone.

use std::ffi::OsString;
use std::path::Path;

/// `-short=VALUE` → `--long=VALUE`.
const WITH_VALUE: &[(&str, &str)] = &[
    ("c", "cpus"),
    ("m", "mem"),
    ("sd", "storage-dir"),
    ("tip", "template-ip"),
    ("tif", "template-interface"),
    ("tcip", "template-cluster-ip"),
    ("tcif", "template-cluster-interface"),
    ("bp", "bridge-port"),
    ("bi", "bridge-interface"),
    ("t", "cluster-token"),
    ("kip", "kubelet-ip"),
    ("cl", "name"),
    ("pp", "peer-port"),
    ("cp", "client-port"),
    ("ev", "etcd-version"),
    ("cdv", "containerd-version"),
    ("katav", "kata-version"),
    ("runcv", "runc-version"),
    ("kv", "kubernetes-version"),
    ("cnipv", "cni-plugins-version"),
    ("calicov", "calico-version"),
    ("nexusv", "nexus-version"),
    ("cidr", "pod-cidr"),
    ("clb", "controller-lb-ip"),
];

/// `-short VALUE` → `--long VALUE` (the value is the next token).
const SPACED: &[(&str, &str)] = &[
    ("c", "controller"),
    ("w", "worker"),
    ("r", "registry-node"),
    ("clb", "controller-lb-ip"),
];

/// `-short` → `--long`.
const SWITCHES: &[(&str, &str)] = &[
    ("ndev", "cluster-net-dev"),
    ("fedr", "force-etcd-data-reset"),
    ("d", "debug"),
];

/// Does the token after `-f` name a cluster file (rather than `-f` meaning force)?
fn looks_like_file(next: Option<&OsString>) -> bool {
    let Some(next) = next.and_then(|n| n.to_str()) else {
        return false;
    };
    !next.starts_with('-')
        && (next.ends_with(".yaml")
            || next.ends_with(".yml")
            || next.ends_with(".json")
            || Path::new(next).is_file())
}

/// Original flags kubicluster does not take, with why (named in the error instead of clap's
/// "unexpected argument --template-interface").
pub const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "template-interface",
        "the VMs' interfaces are found by MAC address; there is nothing to name",
    ),
    (
        "template-cluster-interface",
        "the VMs' interfaces are found by MAC address; there is nothing to name",
    ),
    ("kubelet-ip", "kubelet's node IP is each worker's clusterIP"),
    (
        "registry-node",
        "registry nodes are not supported; use spec.images for offline images",
    ),
    (
        "nexus-version",
        "a Nexus registry is not supported; use spec.images for offline images",
    ),
];

/// One legacy token and the long flag it became.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub original: String,
    pub long: String,
}

/// Translate legacy tokens; everything else passes through unchanged.
pub fn translate(args: Vec<OsString>) -> Vec<OsString> {
    translate_recorded(args).0
}

/// [`translate`], also saying what became what (for error messages).
pub fn translate_recorded(args: Vec<OsString>) -> (Vec<OsString>, Vec<Translation>) {
    let mut record = Vec::new();
    let mut note = |original: &str, long: &str| {
        record.push(Translation {
            original: original.to_string(),
            long: format!("--{long}"),
        })
    };
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().peekable();
    if let Some(program) = it.next() {
        out.push(program);
    }
    while let Some(arg) = it.next() {
        let Some(s) = arg.to_str().map(str::to_string) else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            out.push(arg);
            out.extend(it);
            break;
        }
        let Some(body) = s
            .strip_prefix('-')
            .filter(|b| !b.starts_with('-') && !b.is_empty())
        else {
            out.push(arg);
            continue;
        };
        if body == "f" {
            let long = if looks_like_file(it.peek()) {
                "file"
            } else {
                "force"
            };
            note(&s, long);
            out.push(format!("--{long}").into());
            continue;
        }
        if let Some((key, value)) = body.split_once('=') {
            if let Some((_, long)) = WITH_VALUE.iter().find(|(k, _)| *k == key) {
                note(&s, long);
                out.push(format!("--{long}={value}").into());
                continue;
            }
            // `-ndev=true` / `-ndev=false`: a switch written with a value.
            if let Some((_, long)) = SWITCHES.iter().find(|(k, _)| *k == key) {
                match value {
                    "true" | "yes" | "1" => {
                        note(&s, long);
                        out.push(format!("--{long}").into());
                    }
                    "false" | "no" | "0" => {}
                    _ => {
                        note(&s, long);
                        out.push(format!("--{long}={value}").into());
                    }
                }
                continue;
            }
        } else if let Some((_, long)) = SPACED.iter().chain(SWITCHES).find(|(k, _)| *k == body) {
            note(&s, long);
            out.push(format!("--{long}").into());
            continue;
        } else if let Some((_, long)) = WITH_VALUE.iter().find(|(k, _)| *k == body)
            && it
                .peek()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('-'))
        {
            // `-kv 1.31.0`: the original's `-kv=1.31.0` written with a space.
            note(&s, long);
            out.push(format!("--{long}").into());
            continue;
        }
        out.push(arg);
    }
    (out, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &str) -> String {
        let v: Vec<OsString> = std::iter::once("kubicluster")
            .chain(args.split(' '))
            .map(OsString::from)
            .collect();
        translate(v)
            .into_iter()
            .skip(1)
            .map(|a| a.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn node_specs_and_versions() {
        assert_eq!(
            t(
                "cnc -c kubi-controller-01,192.168.24.11,192.168.122.11 -w w1,1.2.3.4,5.6.7.8 -clb 192.168.24.10 -kv=1.32.3 -f"
            ),
            "cnc --controller kubi-controller-01,192.168.24.11,192.168.122.11 --worker w1,1.2.3.4,5.6.7.8 \
             --controller-lb-ip 192.168.24.10 --kubernetes-version=1.32.3 --force"
        );
    }

    #[test]
    fn cpus_with_equals_is_not_a_controller() {
        assert_eq!(
            t("create-vms -c=2 -m=2097152"),
            "create-vms --cpus=2 --mem=2097152"
        );
    }

    #[test]
    fn multi_letter_switches_are_not_bundles() {
        assert_eq!(
            t("prepare -ndev -bi=vmbr30 -fedr -d"),
            "prepare --cluster-net-dev --bridge-interface=vmbr30 --force-etcd-data-reset --debug"
        );
    }

    #[test]
    fn every_version_flag() {
        assert_eq!(
            t(
                "cnc -ev=3.5.17 -cdv=1.7.24 -runcv=1.2.4 -katav=3.13.0 -cnipv=1.6.2 -calicov=3.29.1 -cidr=10.200.0.0/16 -cl=lab"
            ),
            "cnc --etcd-version=3.5.17 --containerd-version=1.7.24 --runc-version=1.2.4 --kata-version=3.13.0 \
             --cni-plugins-version=1.6.2 --calico-version=3.29.1 --pod-cidr=10.200.0.0/16 --name=lab"
        );
    }

    #[test]
    fn dash_f_is_file_or_force() {
        assert_eq!(
            t("validate -f cluster.yaml"),
            "validate --file cluster.yaml"
        );
        assert_eq!(t("cnc -f for_worker_nodes"), "cnc --force for_worker_nodes");
        assert_eq!(t("cnc -f -c a,b,c"), "cnc --force --controller a,b,c");
    }

    #[test]
    fn spaced_values_and_switches_with_values() {
        assert_eq!(
            t("validate -cl lab -kv 1.31.0"),
            "validate --name lab --kubernetes-version 1.31.0"
        );
        assert_eq!(t("validate -ndev=true"), "validate --cluster-net-dev");
        assert_eq!(t("validate -ndev=false"), "validate");
        // -c alone is still a controller.
        assert_eq!(t("cnc -c a,b,c"), "cnc --controller a,b,c");
    }

    #[test]
    fn leaves_modern_and_unknown_tokens_and_everything_after_double_dash() {
        assert_eq!(
            t("cnc --controller x -h -V -xyz -- -c"),
            "cnc --controller x -h -V -xyz -- -c"
        );
    }
}
