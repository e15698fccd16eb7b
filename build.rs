//! Link options for the `opsagent` binary only (dependencies are not rebuilt for them).
//!
//! On glibc Linux the executable's relative relocations are packed (`-z pack-relative-relocs`,
//! DT_RELR, glibc ≥ 2.36 as in Debian 12): the dynamic loader otherwise reads a 1.6 MB
//! relocation table at every start, which stays resident for the daemon's whole life
//! (docs/BENCHMARKS.md, idle daemon). `OPSAGENT_NO_RELR=1` turns it off for older systems.

fn main() {
    println!("cargo:rerun-if-env-changed=OPSAGENT_NO_RELR");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && std::env::var_os("OPSAGENT_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
