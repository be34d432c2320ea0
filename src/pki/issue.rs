//! Key generation and signing with rcgen (aws-lc-rs backend, which also generates RSA keys).

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::catalog::{Authority, CertSpec, Usage};
use crate::spec::KeyAlgorithm;

/// Certificates start slightly in the past so a node whose clock lags a little accepts them.
const BACKDATE: Duration = Duration::minutes(5);

pub fn generate_key(alg: KeyAlgorithm) -> Result<KeyPair> {
    let key = match alg {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
        }
        KeyAlgorithm::Rsa3072 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072)
        }
        KeyAlgorithm::Rsa4096 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096)
        }
    };
    key.with_context(|| format!("generate {} key", alg.as_str()))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and of full length
    SerialNumber::from_slice(&bytes)
}

fn base_params(cn: &str, orgs: &[String], days: u32) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(days.into());
    p.serial_number = Some(random_serial());
    p
}

/// Create a self-signed CA certificate; returns its PEM.
pub fn self_signed_ca(authority: Authority, key: &KeyPair, days: u32) -> Result<String> {
    let cn = authority.common_name();
    let mut p = base_params(cn, &[cn.to_string()], days);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = p
        .self_signed(key)
        .with_context(|| format!("self-sign CA {}", authority.file()))?;
    Ok(cert.pem())
}

/// Issue a leaf for `spec` with `key`, signed by the CA in `ca_pem`/`ca_key`; returns its PEM.
pub fn signed_leaf(
    spec: &CertSpec,
    key: &KeyPair,
    ca_pem: &str,
    ca_key: &KeyPair,
    days: u32,
) -> Result<String> {
    let mut p = base_params(&spec.common_name, &spec.organizations, days);
    p.is_ca = IsCa::ExplicitNoCa;
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if matches!(key.algorithm(), a if *a == rcgen::PKCS_RSA_SHA256) {
        p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    p.extended_key_usages = match spec.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Usage::Signing => vec![],
    };
    for d in &spec.dns_names {
        p.subject_alt_names.push(SanType::DnsName(
            d.as_str()
                .try_into()
                .with_context(|| format!("SAN {d:?}"))?,
        ));
    }
    for ip in &spec.ip_addresses {
        p.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).context("load CA certificate")?;
    let cert = p
        .signed_by(key, &issuer)
        .with_context(|| format!("sign {}", spec.file))?;
    Ok(cert.pem())
}
