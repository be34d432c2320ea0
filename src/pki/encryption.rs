//! Encryption at rest: `EncryptionConfiguration` (apiserver.config.k8s.io/v1) as typed structs.
//! Secrets are encrypted with one 32-byte random key (secretbox by default, aescbc on request),
//! then `identity` so existing plaintext secrets stay readable. Created once; never rotated
//! silently, because a new key would make every stored secret unreadable.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::spec::EncryptionProvider;

pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";
pub const KIND: &str = "EncryptionConfiguration";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    pub api_version: String,
    pub kind: String,
    pub resources: Vec<ResourceConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceConfig {
    pub resources: Vec<String>,
    pub providers: Vec<Provider>,
}

/// One provider; exactly one field is set (the Kubernetes shape is a one-key map).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Provider {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<KeysProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aescbc: Option<KeysProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Empty>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeysProvider {
    pub keys: Vec<Key>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Key {
    pub name: String,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Empty {}

impl EncryptionConfiguration {
    /// A new configuration with a fresh random 32-byte key.
    pub fn generate(provider: EncryptionProvider) -> Self {
        let secret: [u8; 32] = rand::random();
        let keys = KeysProvider {
            keys: vec![Key {
                name: "key1".into(),
                secret: B64.encode(secret),
            }],
        };
        let first = match provider {
            EncryptionProvider::Secretbox => Provider {
                secretbox: Some(keys),
                ..Provider::default()
            },
            EncryptionProvider::Aescbc => Provider {
                aescbc: Some(keys),
                ..Provider::default()
            },
        };
        EncryptionConfiguration {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            resources: vec![ResourceConfig {
                resources: vec!["secrets".into()],
                providers: vec![
                    first,
                    Provider {
                        identity: Some(Empty {}),
                        ..Provider::default()
                    },
                ],
            }],
        }
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("encryption config serializes")
    }

    /// Parse and check an existing file: right kind, and every key decodes to 32 bytes.
    pub fn from_yaml(s: &str) -> Result<Self, String> {
        let c: EncryptionConfiguration = serde_yaml_ng::from_str(s).map_err(|e| e.to_string())?;
        if c.api_version != API_VERSION || c.kind != KIND {
            return Err(format!(
                "it is {}/{}, expected {API_VERSION}/{KIND}",
                c.api_version, c.kind
            ));
        }
        // Usable means: `secrets` is covered, and its first provider encrypts with a key.
        let secrets = c
            .resources
            .iter()
            .find(|r| r.resources.iter().any(|x| x == "secrets"))
            .ok_or("no resources entry covers secrets")?;
        match secrets.providers.first() {
            Some(Provider {
                secretbox: Some(k), ..
            })
            | Some(Provider {
                aescbc: Some(k), ..
            }) if !k.keys.is_empty() => {}
            _ => {
                return Err(
                    "its first provider for secrets is not secretbox or aescbc with a key".into(),
                );
            }
        }
        for r in &c.resources {
            for p in &r.providers {
                for kp in [&p.secretbox, &p.aescbc].into_iter().flatten() {
                    for k in &kp.keys {
                        match B64.decode(&k.secret) {
                            Ok(b) if b.len() == 32 => {}
                            _ => {
                                return Err(format!(
                                    "key {:?} is not 32 base64-encoded bytes",
                                    k.name
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(c)
    }
}
