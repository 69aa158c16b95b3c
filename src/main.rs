//! The `bucketfs` command.

fn main() {
    let cli = bucketfs::cli::Cli::parse_or_exit();
    let code = match cli.command {
        bucketfs::cli::Command::Mount(args) => bucketfs::mount::run(*args),
        bucketfs::cli::Command::Presign(args) => bucketfs::presign::run(args),
        bucketfs::cli::Command::Rm(args) => bucketfs::rm::run(args),
    };
    std::process::exit(code);
}
