//! `opsagent generate-assets DIR` (hidden): writes the man pages and the bash/zsh/fish
//! completions, generated from the clap definitions, for the Debian package.
//!
//! `scripts/build-deb` runs it on the release binary before `cargo deb --no-build`, so the
//! package ships pages and completions that match the binary it ships. Layout under DIR:
//! `man/opsagent.1`, `man/opsagent-VERB.1` for each visible verb, `completions/opsagent.bash`,
//! `completions/_opsagent` (zsh) and `completions/opsagent.fish`.

use super::Cli;
use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// Arguments of `generate-assets`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes every asset under `args.dir` and prints the paths written.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let mut written = write_man_pages(&args.dir.join("man"))?;
    written.extend(write_completions(&args.dir.join("completions"))?);
    for p in &written {
        println!("{}", p.display());
    }
    Ok(())
}

/// The top-level page `opsagent.1` plus `opsagent-VERB.1` for every verb not hidden.
fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let cmd = Cli::command();
    let mut written = vec![render_man(dir, cmd.clone())?];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub = sub
            .clone()
            .display_name(format!("opsagent-{}", sub.get_name()))
            .bin_name(format!("opsagent {}", sub.get_name()))
            .version(env!("CARGO_PKG_VERSION"));
        written.push(render_man(dir, sub)?);
    }
    Ok(written)
}

fn render_man(dir: &Path, cmd: clap::Command) -> anyhow::Result<PathBuf> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .context("rendering a man page")?;
    write(&path, &buf)?;
    Ok(path)
}

/// bash, zsh and fish completions, named as each shell's vendor directory expects.
fn write_completions(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let mut written = Vec::new();
    for (shell, file) in [
        (Shell::Bash, "opsagent.bash"),
        (Shell::Zsh, "_opsagent"),
        (Shell::Fish, "opsagent.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut visible_command(), "opsagent", &mut buf);
        let path = dir.join(file);
        write(&path, &buf)?;
        written.push(path);
    }
    Ok(written)
}

/// The command line without hidden verbs: clap_complete would offer them.
fn visible_command() -> clap::Command {
    let cmd = Cli::command();
    let verbs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut visible = clap::Command::new("opsagent")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true);
    if let Some(about) = cmd.get_about() {
        visible = visible.about(about.clone());
    }
    visible
        .args(cmd.get_arguments().cloned())
        .subcommands(verbs)
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_pages_and_completions() {
        let dir = tempfile::tempdir().unwrap();
        super::run(&super::Args {
            dir: dir.path().to_path_buf(),
        })
        .unwrap();
        let man = std::fs::read_to_string(dir.path().join("man/opsagent.1")).unwrap();
        assert!(man.contains(".TH opsagent 1"), "{man}");
        assert!(man.contains("check\\-config"), "{man}");
        assert!(
            !man.contains("generate\\-assets"),
            "hidden verb leaked: {man}"
        );
        let restore = std::fs::read_to_string(dir.path().join("man/opsagent-restore.1")).unwrap();
        assert!(restore.contains("opsagent\\-restore"), "{restore}");
        for f in ["opsagent.bash", "_opsagent", "opsagent.fish"] {
            let text = std::fs::read_to_string(dir.path().join("completions").join(f)).unwrap();
            assert!(text.contains("check-config"), "{f}: {text}");
            assert!(
                !text.contains("generate-assets"),
                "{f} offers the hidden verb"
            );
        }
        assert!(!dir.path().join("man/opsagent-generate-assets.1").exists());
    }
}
