//! Kubernetes' version-skew rules for an upgrade of a running cluster: one minor release at a
//! time, never down across minors (a patch release may go either way within its minor, as
//! the skew policy only speaks of minors), and never to another major. The kubelet-never-newer-
//! than-the-API-server rule is kept by the upgrade's order (controllers first), not here.

use super::Version;

/// Why `from → to` is refused: the rule, and what may come next instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: &'static str,
    pub allowed: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.rule)
    }
}

/// What an upgrade from `from` to `to` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The same version: nothing to do, or the rest of an upgrade that stopped.
    Same,
    /// Another patch release of the same minor.
    Patch,
    /// The next minor.
    Minor,
}

const ONE_MINOR: &str = "one minor release at a time (Kubernetes' version-skew policy)";
const NO_DOWNGRADE: &str = "no downgrade to an older minor release (etcd's stored objects and the \
                            API's versions only move forward)";

/// Check Kubernetes' skew rules for the whole cluster going from `from` to `to`.
pub fn check(from: Version, to: Version) -> Result<Kind, Refusal> {
    let next_minor = format!("{}.{}.x", from.major, from.minor + 1);
    let this_minor = format!("{}.{}.x", from.major, from.minor);
    if to.major != from.major {
        return Err(Refusal {
            rule: "another major version is not an upgrade kubicluster can make",
            allowed: format!("{this_minor} or {next_minor}"),
        });
    }
    match to.minor.cmp(&from.minor) {
        std::cmp::Ordering::Equal if to == from => Ok(Kind::Same),
        std::cmp::Ordering::Equal => Ok(Kind::Patch),
        std::cmp::Ordering::Greater if to.minor == from.minor + 1 => Ok(Kind::Minor),
        std::cmp::Ordering::Greater => Err(Refusal {
            rule: ONE_MINOR,
            allowed: next_minor,
        }),
        std::cmp::Ordering::Less => Err(Refusal {
            rule: NO_DOWNGRADE,
            allowed: format!("{this_minor} or {next_minor}"),
        }),
    }
}

/// etcd's rules for a rolling upgrade of its members from `from` to `to`: the same shape (one
/// minor at a time, a patch release either way, no downgrade across minors — its storage
/// version has moved forward; etcd's own downgrade procedure is not automated here).
pub fn check_etcd(from: Version, to: Version) -> Result<Kind, Refusal> {
    check(from, to).map_err(|r| Refusal {
        rule: match r.rule {
            ONE_MINOR => "etcd moves one minor release at a time (its rolling-upgrade path)",
            NO_DOWNGRADE => {
                "no etcd downgrade to an older minor release (the storage version has moved \
                 forward; etcd's own downgrade procedure is not automated)"
            }
            _ => "another major version of etcd is not an upgrade kubicluster can make",
        },
        allowed: r.allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn the_next_minor_and_any_patch_of_the_same_minor_are_allowed() {
        assert_eq!(check(v("1.36.3"), v("1.37.2")), Ok(Kind::Minor));
        assert_eq!(check(v("1.37.1"), v("1.37.2")), Ok(Kind::Patch));
        assert_eq!(check(v("1.37.2"), v("1.37.1")), Ok(Kind::Patch));
        assert_eq!(check(v("1.37.2"), v("1.37.2")), Ok(Kind::Same));
    }

    #[test]
    fn skipping_a_minor_is_refused_with_the_next_minor_allowed() {
        let r = check(v("1.35.4"), v("1.37.2")).unwrap_err();
        assert!(r.rule.contains("one minor release at a time"), "{r}");
        assert_eq!(r.allowed, "1.36.x");
    }

    #[test]
    fn a_minor_downgrade_and_a_major_change_are_refused() {
        let r = check(v("1.37.2"), v("1.36.3")).unwrap_err();
        assert!(r.rule.contains("no downgrade"), "{r}");
        assert_eq!(r.allowed, "1.37.x or 1.38.x");
        let r = check(v("1.37.2"), v("2.0.0")).unwrap_err();
        assert!(r.rule.contains("major"), "{r}");
    }

    #[test]
    fn etcd_moves_one_minor_up_or_any_patch_and_never_down_a_minor() {
        assert_eq!(check_etcd(v("3.6.16"), v("3.7.3")), Ok(Kind::Minor));
        assert_eq!(check_etcd(v("3.7.3"), v("3.7.0")), Ok(Kind::Patch));
        let r = check_etcd(v("3.5.21"), v("3.7.3")).unwrap_err();
        assert!(
            r.rule.starts_with("etcd moves one minor release at a time"),
            "{r}"
        );
        assert_eq!(r.allowed, "3.6.x");
        let r = check_etcd(v("3.7.3"), v("3.6.16")).unwrap_err();
        assert!(r.rule.starts_with("no etcd downgrade"), "{r}");
        let r = check_etcd(v("3.7.3"), v("4.0.0")).unwrap_err();
        assert!(r.rule.contains("major version of etcd"), "{r}");
    }
}
