//! kubicluster: build Kubernetes clusters "the hard way" on libvirt VMs.
//!
//! Layers, top to bottom: `cli` (clap, in the binary) → `commands` → `spec` (one validated
//! [`spec::Cluster`]) → `pki` (certificates, kubeconfigs, encryption config) and `fsutil`
//! (atomic, mode-aware writes). `ui` is the only place that prints.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod commands;
pub mod error;
pub mod fsutil;
pub mod hypervisor;
pub mod legacy;
pub mod pki;
pub mod render;
pub mod spec;
pub mod ui;
