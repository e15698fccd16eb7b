//! opsagent: backups of MySQL/MariaDB databases and media directories to object storage,
//! health checks and email alerts for one Debian server, in one binary.
//!
//! The modules are stacked in layers, and a module uses only modules of lower layers: see
//! docs/ARCHITECTURE.md for the table (checked by tests/layers.rs). The list below is
//! alphabetical.

pub mod alert;
pub mod backup;
pub mod binlog;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod health;
pub mod heartbeat;
pub mod liveness;
pub mod log_throttle;
pub mod media;
pub mod metrics;
pub mod mysql_client;
pub mod nofollow;
pub mod priority;
pub mod quote;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod secret;
pub mod snapshot;
pub mod storage;
