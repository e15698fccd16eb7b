//! `[[checks.peer]]`: another agent's heartbeat in this agent's bucket, under its prefix.

use super::defaults;
use super::raw_checks::RawPeer;
use super::resolve::Ctx;
use super::span::KeyPath;
use crate::health::{self, ProbeSpec};
use crate::storage::StorageSpec;

/// One `[[checks.peer]]`; `storage` is this agent's (the peer is read with its prefix).
pub(super) fn peer(
    cx: &mut Ctx,
    c: &RawPeer,
    storage: Option<&StorageSpec>,
    q: &KeyPath,
) -> Option<ProbeSpec> {
    let Some(host) = c.host.clone() else {
        cx.missing(
            &q.key("host"),
            "host = \"web-01\": the other agent's [agent] hostname",
        );
        return None;
    };
    let prefix =
        super::resolve_storage::storage_prefix(cx, c.prefix.as_deref(), &host, &q.key("prefix"))?;
    let storage = storage?.clone().with_prefix(prefix);
    Some(ProbeSpec::Peer(health::peer::Spec {
        host,
        storage,
        max_age: c.max_age.unwrap_or(defaults::PEER_MAX_AGE),
        max_backup_age: c.max_backup_age,
    }))
}
