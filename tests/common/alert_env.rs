//! The bench the in-process alert tests share: a config mailing a fresh recipient on the shared
//! SMTP capture server, its catalog, and the engine ticked on simulated time with mails
//! delivered through the outbox and the real SMTP client.

use super::smtp::SmtpServer;
use chrono::{DateTime, Utc};
use opsagent::alert::email::Mailer;
use opsagent::alert::{outbox, Engine};
use opsagent::catalog::Catalog;
use opsagent::config::Config;
use std::path::PathBuf;
use std::sync::Arc;

/// A config and its catalog, in a temp dir.
pub struct AlertEnv {
    _dir: tempfile::TempDir,
    /// The config file.
    pub file: PathBuf,
    /// The config, loaded.
    pub cfg: Config,
    /// Its catalog.
    pub cat: Arc<Catalog>,
    /// The recipient of its mails (unique to this env).
    pub rcpt: String,
}

impl AlertEnv {
    /// A config mailing a fresh recipient named after `name`, with `extra` TOML (sections that
    /// go before `[alerts.email]`).
    pub fn new(name: &str, extra: &str) -> AlertEnv {
        let dir = tempfile::tempdir().unwrap();
        let rcpt = format!("{}@example.com", super::unique_name(name));
        let port = SmtpServer::shared().port();
        let file = dir.path().join("opsagent.toml");
        std::fs::write(
            &file,
            format!(
                "[agent]\nhostname = \"web-01\"\nstate_dir = \"{d}/state\"\ntimezone = \"UTC\"\n\
                 [storage]\ntype = \"local\"\npath = \"{d}/backups\"\n{extra}\
                 [alerts.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\n\
                 from = \"opsagent <opsagent@web-01.example.com>\"\nto = [\"{rcpt}\"]\n",
                d = dir.path().display()
            ),
        )
        .unwrap();
        let cfg = opsagent::config::load(&file).unwrap();
        let cat = Arc::new(Catalog::open(&cfg.catalog_path()).unwrap());
        AlertEnv {
            _dir: dir,
            file,
            cfg,
            cat,
            rcpt,
        }
    }

    /// One engine tick at `at`.
    pub fn tick(&self, at: DateTime<Utc>) -> Option<String> {
        Engine::new(self.cat.clone(), self.cfg.alert_setup())
            .tick(at)
            .unwrap()
    }

    /// Delivers what is due in the outbox (which must then be empty); returns the mails now
    /// captured for this env's recipient, waiting for `expect` of them.
    pub fn deliver(&self, expect: usize) -> Vec<String> {
        let mailer = Mailer::new(self.cfg.email.clone().unwrap()).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(outbox::deliver_due(&self.cat, &mailer));
        assert!(
            self.cat.outbox(None).unwrap().is_empty(),
            "outbox not empty"
        );
        SmtpServer::shared().wait_for_messages_to(
            &self.rcpt,
            expect,
            std::time::Duration::from_secs(5),
        )
    }
}
