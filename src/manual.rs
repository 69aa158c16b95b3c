//! Shell completions and man pages, generated from the CLI definition (clap_complete,
//! clap_mangen), so they never drift from `--help`.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;

/// `bucketfs completions SHELL`: the script on stdout.
pub fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(shell, &mut cmd, "bucketfs", &mut out);
    match out.flush() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bucketfs: cannot write the completion script: {e}");
            1
        }
    }
}

/// `bucketfs manpages DIR`: bucketfs.1 and bucketfs-SUBCOMMAND.1 for every visible
/// subcommand.
pub fn manpages(dir: &Path) -> i32 {
    match write_manpages(dir) {
        Ok(names) => {
            for n in names {
                eprintln!("{}", dir.join(n).display());
            }
            0
        }
        Err(e) => {
            eprintln!(
                "bucketfs: cannot write the man pages in {}: {e}",
                dir.display()
            );
            1
        }
    }
}

/// Write the pages; returns their file names.
pub fn write_manpages(dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    let mut names = Vec::new();
    let mut page = |cmd: clap::Command, name: String| -> std::io::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf)?;
        std::fs::write(dir.join(&name), buf)?;
        names.push(name);
        Ok(())
    };
    page(cmd.clone(), "bucketfs.1".into())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("bucketfs-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(name.replace('-', " "));
        page(sub, format!("{name}.1"))?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_cover_every_subcommand_and_option() {
        let dir = tempfile::tempdir().unwrap();
        let names = write_manpages(dir.path()).unwrap();
        for n in [
            "bucketfs.1",
            "bucketfs-mount.1",
            "bucketfs-presign.1",
            "bucketfs-rm.1",
            "bucketfs-completions.1",
        ] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("manpages")), "{names:?}");
        let mount = std::fs::read_to_string(dir.path().join("bucketfs-mount.1")).unwrap();
        assert!(
            mount.starts_with(".ie") || mount.contains(".TH"),
            "{}",
            &mount[..200]
        );
        for long in crate::cli::grammar().mount_options {
            // roff escapes '-' as '\-'.
            let roff = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert!(mount.contains(&roff), "bucketfs-mount.1 lacks --{long}");
        }
    }
}
