//! Component versions: parsing and the supported release lines.
//!
//! A version is `MAJOR.MINOR.PATCH` (a leading `v` is accepted and dropped). Each component has a
//! range of supported minor lines; anything outside is "unknown" because kubicluster's unit files and
//! flags are written for those lines (the original pinned Kubernetes 1.18, whose flags are gone).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a version of the form MAJOR.MINOR.PATCH (e.g. 1.37.2)");
        let t = s.strip_prefix('v').unwrap_or(s);
        let mut parts = t.split('.');
        let mut next = || -> Result<u32, String> {
            let p = parts.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 6 {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = Version {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }
}

/// A component and the minor lines kubicluster knows how to install.
pub struct Supported {
    pub component: &'static str,
    /// Path in the cluster file.
    pub path: &'static str,
    pub major: u32,
    pub minors: std::ops::RangeInclusive<u32>,
    /// Further lines of the next major: (major, first minor, last minor).
    pub next: Option<(u32, u32, u32)>,
}

pub const SUPPORTED: &[Supported] = &[
    Supported {
        component: "kubernetes",
        path: "spec.kubernetes.version",
        major: 1,
        minors: 35..=37,
        next: None,
    },
    Supported {
        component: "etcd",
        path: "spec.versions.etcd",
        major: 3,
        minors: 4..=7,
        next: None,
    },
    Supported {
        component: "containerd",
        path: "spec.versions.containerd",
        major: 1,
        minors: 7..=7,
        next: Some((2, 0, 2)),
    },
    Supported {
        component: "runc",
        path: "spec.versions.runc",
        major: 1,
        minors: 1..=4,
        next: None,
    },
    Supported {
        component: "kata",
        path: "spec.versions.kata",
        major: 3,
        minors: 0..=99,
        next: None,
    },
    Supported {
        component: "cni-plugins",
        path: "spec.versions.cniPlugins",
        major: 1,
        minors: 1..=9,
        next: None,
    },
    Supported {
        component: "calico",
        path: "spec.versions.calico",
        major: 3,
        minors: 28..=31,
        next: None,
    },
];

impl Supported {
    pub fn describe(&self) -> String {
        let (lo, hi) = (self.minors.start(), self.minors.end());
        let first = if *hi == 99 {
            format!("{}.x", self.major)
        } else if lo == hi {
            format!("{}.{lo}", self.major)
        } else {
            format!("{m}.{lo} to {m}.{hi}", m = self.major)
        };
        match self.next {
            Some((m, lo, hi)) => format!("{first} and {m}.{lo} to {m}.{hi}"),
            None => first,
        }
    }

    /// Parse and check a version string for this component.
    pub fn check(&self, s: &str) -> Result<Version, (String, String)> {
        let v: Version = s.parse().map_err(|e: String| {
            (
                e,
                format!(
                    "kubicluster supports {} {}",
                    self.component,
                    self.describe()
                ),
            )
        })?;
        let in_next = self
            .next
            .is_some_and(|(m, lo, hi)| v.major == m && (lo..=hi).contains(&v.minor));
        if !in_next && (v.major != self.major || !self.minors.contains(&v.minor)) {
            return Err((
                format!("{} {v} is not a supported release line", self.component),
                format!(
                    "kubicluster supports {} {}",
                    self.component,
                    self.describe()
                ),
            ));
        }
        Ok(v)
    }
}

pub fn supported(component: &str) -> &'static Supported {
    SUPPORTED
        .iter()
        .find(|s| s.component == component)
        .expect("component listed in SUPPORTED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            "v1.32.3".parse::<Version>().unwrap(),
            Version {
                major: 1,
                minor: 32,
                patch: 3
            }
        );
        for bad in [
            "1.32",
            "1.32.3.4",
            "1.x.3",
            "",
            "1..3",
            "1.32.3-rc1",
            " 1.2.3",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rejects_unsupported_lines() {
        let k = supported("kubernetes");
        assert!(k.check("1.37.2").is_ok());
        assert!(k.check("1.35.4").is_ok());
        let (msg, hint) = k.check("1.33.11").unwrap_err();
        assert!(msg.contains("1.33.11 is not a supported"), "{msg}");
        assert_eq!(hint, "kubicluster supports kubernetes 1.35 to 1.37");
        assert!(k.check("1.38.0").is_err());
        assert!(supported("kata").check("3.13.0").is_ok());
        assert!(supported("kata").check("1.11.2").is_err());
    }
}
