//! Link options for the `opsagent` binary only (dependencies are not rebuilt for them).
//!
//! - On glibc Linux the executable's relative relocations are packed (`-z pack-relative-relocs`,
//!   DT_RELR, glibc ≥ 2.36 as in Debian 12): the dynamic loader otherwise reads a 1.6 MB
//!   relocation table at every start, which stays resident for the daemon's whole life
//!   (docs/BENCHMARKS.md, idle daemon). `OPSAGENT_NO_RELR=1` turns it off for older systems.
//! - Release builds on x86-64 Linux with rustc ≥ 1.90 (whose default linker there is its own
//!   lld) place the functions the idle daemon runs together at the start of the code
//!   (`--symbol-ordering-file=packaging/text-order.txt`, written by scripts/gen-text-order):
//!   the code an idle daemon keeps resident falls from ~11 MiB to ~3 MiB. Names the binary
//!   does not define are ignored. `OPSAGENT_NO_TEXT_ORDER=1` turns it off (e.g. with another
//!   linker).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=OPSAGENT_NO_RELR");
    println!("cargo:rerun-if-env-changed=OPSAGENT_NO_TEXT_ORDER");
    println!("cargo:rerun-if-changed=packaging/text-order.txt");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if linux_gnu && std::env::var_os("OPSAGENT_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("packaging/text-order.txt");
    if var("PROFILE") == "release"
        && var("TARGET") == "x86_64-unknown-linux-gnu"
        && std::env::var_os("OPSAGENT_NO_TEXT_ORDER").is_none()
        && default_linker_is_lld()
        && order.is_file()
    {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether rustc links x86-64 Linux binaries with its bundled lld by default (1.90 and later),
/// and nothing in the environment chose another linker.
fn default_linker_is_lld() -> bool {
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker")
        || std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
    {
        return false;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
