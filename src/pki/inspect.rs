//! Reading certificates back (x509-parser) to decide whether an existing leaf still fits the
//! catalog: the `cnc` idempotency rule. A leaf is re-issued when its key is missing or does not
//! match, its CA changed, its subject, SANs, usages or key algorithm differ from the catalog, or it
//! expires within the renewal window.

use std::collections::BTreeSet;
use std::net::IpAddr;

use anyhow::{Context, Result, anyhow};
use rcgen::KeyPair;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::public_key::PublicKey;

use super::catalog::{CertSpec, Usage};
use crate::spec::KeyAlgorithm;

/// A parsed PEM certificate (owns the DER; parse on demand).
pub struct ParsedPem(Pem);

impl ParsedPem {
    pub fn from_pem(pem: &[u8]) -> Result<Self> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem)
            .map_err(|e| anyhow!("not a PEM certificate: {e}"))?;
        Ok(ParsedPem(p))
    }

    pub fn cert(&self) -> Result<X509Certificate<'_>> {
        self.0
            .parse_x509()
            .map_err(|e| anyhow!("not an X.509 certificate: {e}"))
    }
}

/// `ecdsa-p256`, `rsa-2048`, ... for the key in a certificate.
pub fn key_kind(cert: &X509Certificate<'_>) -> String {
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(r)) => format!("rsa-{}", r.key_size()),
        Ok(PublicKey::EC(p)) if p.key_size() == 256 => "ecdsa-p256".to_string(),
        Ok(PublicKey::EC(p)) => format!("ecdsa-{}", p.key_size()),
        _ => "unknown".to_string(),
    }
}

/// Does `key` hold the private half of `cert`'s public key?
pub fn key_matches(cert: &X509Certificate<'_>, key: &KeyPair) -> bool {
    cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
}

pub fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

pub fn organizations(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect()
}

/// DNS and IP SANs.
pub fn sans(cert: &X509Certificate<'_>) -> (BTreeSet<String>, BTreeSet<IpAddr>) {
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) => {
                    dns.insert(d.to_string());
                }
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ips.insert(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ips.insert(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    (dns, ips)
}

/// (server auth, client auth)
pub fn ext_usages(cert: &X509Certificate<'_>) -> (bool, bool) {
    match cert.extended_key_usage() {
        Ok(Some(e)) => (e.value.server_auth, e.value.client_auth),
        _ => (false, false),
    }
}

fn diff<T: Ord + std::fmt::Display>(want: &BTreeSet<T>, have: &BTreeSet<T>) -> String {
    let list = |s: Vec<&T>| {
        s.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let added: Vec<_> = want.difference(have).collect();
    let removed: Vec<_> = have.difference(want).collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("add {}", list(added)));
    }
    if !removed.is_empty() {
        parts.push(format!("drop {}", list(removed)));
    }
    parts.join("; ")
}

/// Why `cert_pem` + `key_pem` must be re-issued for `spec`, or `None` if they still fit.
pub fn leaf_drift(
    spec: &CertSpec,
    cert_pem: &[u8],
    key_pem: Option<&[u8]>,
    ca_pem: &[u8],
    alg: KeyAlgorithm,
    renew_before_days: u32,
) -> Result<Option<String>> {
    let parsed = match ParsedPem::from_pem(cert_pem) {
        Ok(p) => p,
        Err(e) => return Ok(Some(format!("existing certificate unreadable ({e})"))),
    };
    let cert = match parsed.cert() {
        Ok(c) => c,
        Err(e) => return Ok(Some(format!("existing certificate unreadable ({e})"))),
    };
    let Some(key_pem) = key_pem else {
        return Ok(Some("private key missing".into()));
    };
    let key = match std::str::from_utf8(key_pem)
        .ok()
        .and_then(|s| KeyPair::from_pem(s).ok())
    {
        Some(k) => k,
        None => return Ok(Some("private key unreadable".into())),
    };
    if !key_matches(&cert, &key) {
        return Ok(Some("private key does not match the certificate".into()));
    }
    let ca_parsed = ParsedPem::from_pem(ca_pem).context("CA certificate")?;
    let ca = ca_parsed.cert().context("CA certificate")?;
    if cert.verify_signature(Some(ca.public_key())).is_err() {
        return Ok(Some(format!(
            "not signed by the current {}",
            spec.issuer.file()
        )));
    }
    if common_name(&cert) != spec.common_name || organizations(&cert) != spec.organizations {
        return Ok(Some(format!(
            "subject changed (CN {} O {:?} → CN {} O {:?})",
            common_name(&cert),
            organizations(&cert),
            spec.common_name,
            spec.organizations
        )));
    }
    let (dns, ips) = sans(&cert);
    if dns != spec.dns_names || ips != spec.ip_addresses {
        let mut parts = vec![diff(&spec.dns_names, &dns), diff(&spec.ip_addresses, &ips)];
        parts.retain(|p| !p.is_empty());
        return Ok(Some(format!("SANs changed: {}", parts.join("; "))));
    }
    let want = match spec.usage {
        Usage::Server => (true, false),
        Usage::Client => (false, true),
        Usage::ServerAndClient => (true, true),
        Usage::Signing => (false, false),
    };
    if ext_usages(&cert) != want {
        return Ok(Some("key usages changed".into()));
    }
    let kind = key_kind(&cert);
    if kind != alg.as_str() {
        return Ok(Some(format!(
            "key algorithm changed ({kind} → {})",
            alg.as_str()
        )));
    }
    let not_after = cert.validity().not_after.timestamp();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let left = not_after - now;
    if left < i64::from(renew_before_days) * 86_400 {
        let when = cert.validity().not_after.to_datetime().date();
        return Ok(Some(if left < 0 {
            format!("expired on {when}")
        } else {
            format!("expires on {when}, within {renew_before_days} days")
        }));
    }
    Ok(None)
}
