//! The Debian package's inputs (issue 9): the default /etc/opsagent/opsagent.toml loads and is
//! safe to start, the systemd unit keeps the options an ops agent needs, and the hidden
//! `generate-assets` verb writes what Cargo.toml's `[package.metadata.deb]` packs. The package
//! itself is built, installed and purged by scripts/package-check.

use std::path::Path;
use std::process::Command;

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn packaged_default_config_loads() {
    let path = repo("packaging/opsagent.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .args(["--config", path.to_str().unwrap(), "check-config"])
        .env_remove("OPSAGENT_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {}{stdout}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("/var/lib/opsagent/backups"), "{stdout}");
}

/// Safe to start on any host: local storage under the state directory, no backup jobs that
/// would need credentials, no email until configured.
#[test]
fn packaged_default_config_is_safe_to_start() {
    let text = std::fs::read_to_string(repo("packaging/opsagent.toml")).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    assert_eq!(
        doc["agent"]["state_dir"].as_str(),
        Some("/var/lib/opsagent")
    );
    assert_eq!(doc["storage"]["type"].as_str(), Some("local"));
    assert_eq!(
        doc["storage"]["path"].as_str(),
        Some("/var/lib/opsagent/backups")
    );
    for absent in ["mysql", "alerts", "media"] {
        assert!(
            !doc.contains_key(absent),
            "`{absent}` must stay commented out"
        );
    }
    // Every path in it is absolute: the daemon's working directory is /.
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        if let Some((_, v)) = line.split_once("= \"") {
            if v.starts_with('.') {
                panic!("relative path in the packaged config: {line}");
            }
        }
    }
}

/// systemd-analyze cannot run the unit here (systemd is not PID 1 in CI), so a text check keeps
/// the options that would silently blind the agent out, and the required ones in.
#[test]
fn unit_keeps_the_agent_able_to_see_the_host() {
    let unit = std::fs::read_to_string(repo("systemd/opsagent.service")).unwrap();
    let set: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for blinding in [
        "ProcSubset=",
        "ProtectProc=",
        "PrivateUsers=",
        "PrivateNetwork=",
        "IPAddressDeny=",
    ] {
        assert!(
            !set.iter().any(|l| l.starts_with(blinding)),
            "{blinding} blinds the agent (see the comment at the top of the unit)"
        );
        assert!(
            unit.contains(&format!("#   {blinding}")),
            "the unit's header should say why {blinding} is left out"
        );
    }
    for required in [
        "Type=notify",
        "ExecStart=/usr/bin/opsagent run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "User=opsagent",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/opsagent",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
    ] {
        assert!(set.contains(&required), "missing `{required}`");
    }
    assert!(set.iter().any(|l| l.starts_with("WatchdogSec=")));
    assert!(set.iter().any(|l| l.starts_with("SupplementaryGroups=")));
}

/// The ping checks' sysctl drop-in: packed where systemd-sysctl reads it, one setting that
/// allows every group (a range cannot add one gid without narrowing what systemd already set),
/// and postinst applies it only where systemd runs the host.
#[test]
fn ping_sysctl_is_packaged_and_applied_only_under_systemd() {
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"["packaging/60-opsagent-ping.conf", "usr/lib/sysctl.d/", "644"]"#));
    let conf = std::fs::read_to_string(repo("packaging/60-opsagent-ping.conf")).unwrap();
    let settings: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(settings, ["net.ipv4.ping_group_range = 0 2147483647"]);
    let postinst = std::fs::read_to_string(repo("packaging/debian/postinst")).unwrap();
    let apply = postinst
        .lines()
        .position(|l| l.contains("systemd-sysctl /usr/lib/sysctl.d/60-opsagent-ping.conf"))
        .expect("postinst applies the drop-in");
    let guard = postinst.lines().take(apply).collect::<Vec<_>>().join("\n");
    assert!(guard.contains("[ -d /run/systemd/system ]"), "{postinst}");
}

#[test]
fn generate_assets_writes_what_the_package_ships() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .args(["generate-assets", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
    for rel in [
        "man/opsagent.1",
        "completions/opsagent.bash",
        "completions/_opsagent",
        "completions/opsagent.fish",
    ] {
        assert!(dir.path().join(rel).is_file(), "{rel} not written");
        let source = format!("target/package-assets/{rel}");
        let listed = manifest.contains(&source)
            || (rel.starts_with("man/") && manifest.contains("target/package-assets/man/*.1"));
        assert!(listed, "{source} is not in [package.metadata.deb] assets");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_opsagent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        !help.contains("generate-assets"),
        "the verb is hidden: {help}"
    );
}

/// `postrm purge` with local backups left: they stay, owned by root:root and unreadable to
/// others (the opsagent user is deleted and its UID may be reused); a symlink planted among
/// them is not followed. Runs the real script with its paths moved into a temp dir and the
/// user and group removal cut out; needs root (chown). scripts/package-check does the same on
/// the installed package.
#[test]
fn purge_keeps_local_backups_owned_by_root() {
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("var/lib/opsagent");
    let dump = state.join("backups/web/mysql/main/shop/1.sql.zst");
    std::fs::create_dir_all(dump.parent().unwrap()).unwrap();
    std::fs::write(&dump, b"dump").unwrap();
    std::fs::write(state.join("catalog.sqlite"), b"").unwrap();
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"v").unwrap();
    symlink(&victim, state.join("backups/web/link")).unwrap();
    let (uid, gid) = (65534, 65534);
    for e in walk(&state) {
        std::os::unix::fs::lchown(&e, Some(uid), Some(gid)).unwrap();
        if !e.is_symlink() {
            let mode = if e.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&e, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    std::os::unix::fs::lchown(&victim, Some(uid), Some(gid)).unwrap();
    let script = std::fs::read_to_string(repo("packaging/debian/postrm")).unwrap();
    let cut = script
        .find("    if getent passwd")
        .expect("the user removal");
    let end = script[cut..].find("\nfi\n").expect("end of purge") + cut;
    let script = format!("{}{}", &script[..cut], &script[end..])
        .replace("/var/lib/opsagent", state.to_str().unwrap())
        .replace("/etc/opsagent", d.path().join("etc").to_str().unwrap());
    let out = Command::new("sh")
        .args(["-c", &script, "postrm", "purge"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(dump.is_file() && !state.join("catalog.sqlite").exists());
    for e in walk(&state) {
        let md = std::fs::symlink_metadata(&e).unwrap();
        assert_eq!((md.uid(), md.gid()), (0, 0), "{}", e.display());
        if !md.is_symlink() {
            assert_eq!(md.mode() & 0o077, 0, "{} is {:o}", e.display(), md.mode());
        }
    }
    let md = std::fs::metadata(&victim).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o777), (uid, 0o644), "link followed");
}

/// `dir` and everything below it (symlinks not followed).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if dir.is_dir() && !dir.is_symlink() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}
