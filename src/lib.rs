//! opsagent: backups of MySQL/MariaDB databases and media directories to object storage,
//! health checks and email alerts for one Debian server, in one binary.
//!
//! Module order follows the dependency direction (imports only point down the list, see
//! shared/STYLE.md): `error`, `secret`, `quote`, `nofollow` → adapters (`storage`, `catalog`) → `config` → `daemon`, `cli`.

pub mod alert;
pub mod backup;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod health;
pub mod media;
pub mod metrics;
pub mod mysql_client;
pub mod nofollow;
pub mod quote;
pub mod repeated;
pub mod restore;
pub mod secret;
pub mod storage;
