//! The `bucketfs` command.

fn main() {
    let cli = bucketfs::cli::Cli::parse_or_exit();
    let code = match cli.command {
        bucketfs::cli::Command::Mount(args) => bucketfs::mount::run(*args),
        bucketfs::cli::Command::Presign(args) => bucketfs::presign::run(args),
        bucketfs::cli::Command::Rm(args) => bucketfs::rm::run(args),
        bucketfs::cli::Command::Completions { shell } => bucketfs::manual::completions(shell),
        bucketfs::cli::Command::Manpages { dir } => bucketfs::manual::manpages(&dir),
    };
    std::process::exit(code);
}
