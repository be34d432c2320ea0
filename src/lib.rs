//! kubicluster: build Kubernetes clusters "the hard way" on libvirt VMs.
//!
//! Layers, top to bottom: `cli` (clap, in the binary) → `commands` → `spec` (one validated
//! [`spec::Cluster`]) → `pki` (certificates, kubeconfigs, encryption config) and `fsutil`
//! (atomic, mode-aware writes). `ui` is the only place that prints.
#![forbid(unsafe_code)]

pub mod app;
pub mod artifacts;
pub mod backups;
pub mod blob;
pub mod cis;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod host;
pub mod hypervisor;
pub mod image;
pub mod images;
pub mod interrupt;
pub mod kubeapi;
pub mod lab;
pub mod legacy;
pub mod logfile;
pub mod net;
pub mod par;
pub mod pki;
pub mod placement;
pub mod render;
pub mod retry;
pub mod snapshots;
pub mod spec;
pub mod sshkeys;
pub mod steps;
pub mod ui;
pub mod vms;
