//! The argument forms other programs call bucketfs with, rewritten into `bucketfs mount`
//! arguments before clap sees them:
//! - mount(8)'s helper call, through `mount.fuse.bucketfs` (a link to the binary):
//!   `mount.fuse.bucketfs SOURCE MNT [-sfnv] [-N NS] [-o OPTS] [-t TYPE]`;
//! - fuse3's `mount.fuse3`, which runs the type's program as `bucketfs SOURCE MNT -o OPTS`;
//! - `-o name=value,name,...` anywhere among `bucketfs mount` arguments.
//!
//! Every long option of `bucketfs mount` has an `-o` spelling (`endpoint_url=URL` for
//! `--endpoint-url URL`, `read_only` for `--read-only`); the generic options mount(8) and
//! fstab use are mapped (`ro`, `allow_other`, `nonempty`) or ignored (`rw`, `_netdev`,
//! `nofail`, `noauto`, `user`, `x-systemd.*`...). An unknown option is an error, unless
//! mount(8) was given `-s` (sloppy).

use std::ffi::OsString;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Rewritten {
    /// Parse these arguments (argv[0] included).
    Args(Vec<OsString>),
    /// mount(8) `-f` ("fake"): everything but the mount itself, which is nothing here.
    Fake,
}

/// What the rewrite needs of the CLI definition (see `cli::grammar`).
pub struct Grammar {
    /// The subcommand names, which the `bucketfs SOURCE MNT` form cannot start with.
    pub subcommands: Vec<String>,
    /// The long option names of `bucketfs mount` (as `read-only`), which `-o` names
    /// must be one of.
    pub mount_options: Vec<String>,
}

/// Options of mount(8) and fstab that mean nothing to bucketfs: mount(8), systemd or
/// the kernel act on them (or they are the default here).
const IGNORED: &[&str] = &[
    "rw",
    "defaults",
    "_netdev",
    "nofail",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "async",
    "sync",
    "silent",
    "loud",
    "default_permissions",
];

/// Rewrite `argv` (argv[0] first).
pub fn rewrite(argv: Vec<OsString>, grammar: &Grammar) -> Result<Rewritten, String> {
    let long_options = &grammar.mount_options;
    let prog = argv.first().cloned().unwrap_or_else(|| "bucketfs".into());
    let name = std::path::Path::new(&prog)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with("mount.") {
        return helper(prog, &argv[1..], long_options);
    }
    let first = argv.get(1).map(|a| a.to_string_lossy().into_owned());
    match first.as_deref() {
        // `bucketfs SOURCE MNT -o ...`, as mount.fuse3 runs it.
        Some(a) if !a.starts_with('-') && !grammar.subcommands.iter().any(|s| s == a) => {
            let mut out = vec![prog, "mount".into()];
            out.extend(expand(&argv[1..], long_options, false)?);
            Ok(Rewritten::Args(out))
        }
        Some("mount") => {
            let mut out = vec![prog, "mount".into()];
            out.extend(expand(&argv[2..], long_options, false)?);
            Ok(Rewritten::Args(out))
        }
        _ => Ok(Rewritten::Args(argv)),
    }
}

/// mount(8)'s call of `mount.TYPE`.
fn helper(prog: OsString, args: &[OsString], long_options: &[String]) -> Result<Rewritten, String> {
    let mut positional = Vec::new();
    let mut opts = Vec::new();
    let (mut sloppy, mut fake) = (false, false);
    let mut i = 0;
    while i < args.len() {
        let a = args[i].to_string_lossy().into_owned();
        i += 1;
        if a == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
            positional.push(args[i - 1].clone());
            continue;
        };
        for (at, c) in flags.char_indices() {
            match c {
                's' => sloppy = true,
                'f' => fake = true,
                // No mtab to skip writing; verbosity is the log's.
                'n' | 'v' => {}
                'o' | 't' | 'N' => {
                    let rest = &flags[at + 1..];
                    let value = if !rest.is_empty() {
                        rest.to_string()
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].to_string_lossy().into_owned()
                    } else {
                        return Err(format!("option -{c} needs a value"));
                    };
                    if c == 'o' {
                        opts.push(value);
                    }
                    break;
                }
                _ => return Err(format!("unknown option -{c} of the mount helper")),
            }
        }
    }
    if positional.len() != 2 {
        return Err(format!(
            "the mount helper takes SOURCE MOUNTPOINT [-o OPTIONS], got {} arguments",
            positional.len()
        ));
    }
    let mut rest = positional;
    for o in opts {
        rest.push("-o".into());
        rest.push(o.into());
    }
    let expanded = expand(&rest, long_options, sloppy)?;
    if fake {
        return Ok(Rewritten::Fake);
    }
    let mut out = vec![prog, "mount".into()];
    out.extend(expanded);
    Ok(Rewritten::Args(out))
}

/// Replace every `-o OPTS` / `-oOPTS` among `args` by the long options it spells.
fn expand(
    args: &[OsString],
    long_options: &[String],
    sloppy: bool,
) -> Result<Vec<OsString>, String> {
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        let s = a.to_string_lossy();
        if s == "--" {
            out.extend(args[i - 1..].iter().cloned());
            break;
        }
        let list = if s == "-o" {
            let Some(v) = args.get(i) else {
                return Err("option -o needs a value (name=value,name,...)".into());
            };
            i += 1;
            v.to_string_lossy().into_owned()
        } else if let Some(v) = s.strip_prefix("-o").filter(|_| !s.starts_with("--")) {
            v.to_string()
        } else {
            out.push(a.clone());
            continue;
        };
        for item in split_options(&list)? {
            out.extend(
                option(&item, long_options, sloppy)?
                    .into_iter()
                    .map(OsString::from),
            );
        }
    }
    Ok(out)
}

/// One `-o` item as long options (none for an ignored one).
fn option(item: &str, long_options: &[String], sloppy: bool) -> Result<Vec<String>, String> {
    let (name, value) = match item.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (item, None),
    };
    let generic = match name {
        "ro" => Some("read-only"),
        "nonempty" => Some("allow-non-empty"),
        _ => None,
    };
    if value.is_none() {
        if let Some(long) = generic {
            return Ok(vec![format!("--{long}")]);
        }
    }
    if IGNORED.contains(&name)
        || name.starts_with("x-")
        || name == "comment"
        || name == "fsname"
        || name == "subtype"
    {
        return Ok(Vec::new());
    }
    let long = name.replace('_', "-");
    if !long_options.contains(&long) {
        if sloppy {
            return Ok(Vec::new());
        }
        return Err(format!("unknown mount option {name:?} (see `bucketfs mount --help`; every long option has an -o name=value spelling)"));
    }
    Ok(match value {
        Some(v) => vec![format!("--{long}={v}")],
        None => vec![format!("--{long}")],
    })
}

/// Split `a=1,b,"c=x,y"` at the commas outside double quotes, dropping the quotes.
fn split_options(list: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in list.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("unbalanced double quote in mount options {list:?}"));
    }
    items.push(cur);
    Ok(items.into_iter().filter(|i| !i.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(argv: &[&str]) -> Result<Rewritten, String> {
        rewrite(
            argv.iter().map(OsString::from).collect(),
            &crate::cli::grammar(),
        )
    }

    fn args(argv: &[&str]) -> Vec<String> {
        match run(argv).unwrap() {
            Rewritten::Args(a) => a.into_iter().map(|a| a.into_string().unwrap()).collect(),
            Rewritten::Fake => panic!("fake"),
        }
    }

    #[test]
    fn mount_helper_call_becomes_a_mount_command() {
        assert_eq!(
            args(&[
                "/sbin/mount.fuse.bucketfs",
                "demo/pre",
                "/mnt/d",
                "-o",
                "rw,_netdev,allow_other,endpoint_url=http://127.0.0.1:9000,region=eu-west-1,ro,x-systemd.automount,nofail",
                "-n",
            ]),
            [
                "/sbin/mount.fuse.bucketfs",
                "mount",
                "demo/pre",
                "/mnt/d",
                "--allow-other",
                "--endpoint-url=http://127.0.0.1:9000",
                "--region=eu-west-1",
                "--read-only",
            ]
        );
    }

    #[test]
    fn helper_flags_are_taken_and_fake_mounts_nothing() {
        assert_eq!(
            run(&["mount.fuse.bucketfs", "b", "/m", "-fv", "-o", "uid=5"]).unwrap(),
            Rewritten::Fake
        );
        // -f still validates the options.
        assert!(run(&["mount.fuse.bucketfs", "b", "/m", "-f", "-o", "bogus=1"]).is_err());
        assert_eq!(
            args(&[
                "mount.bucketfs",
                "-s",
                "b",
                "/m",
                "-t",
                "fuse.bucketfs",
                "-obogus=1,uid=7",
                "-N",
                "/proc/1/ns/mnt"
            ]),
            ["mount.bucketfs", "mount", "b", "/m", "--uid=7"]
        );
        assert!(run(&["mount.fuse.bucketfs", "b"]).is_err());
        assert!(run(&["mount.fuse.bucketfs", "b", "/m", "-o"]).is_err());
        assert!(run(&["mount.fuse.bucketfs", "b", "/m", "-q"]).is_err());
    }

    #[test]
    fn mount_fuse3_form_and_o_in_the_mount_subcommand() {
        assert_eq!(
            args(&["bucketfs", "b", "/m", "-o", "region=r,nonempty"]),
            [
                "bucketfs",
                "mount",
                "b",
                "/m",
                "--region=r",
                "--allow-non-empty"
            ]
        );
        assert_eq!(
            args(&[
                "bucketfs",
                "mount",
                "-ometadata_ttl=5",
                "b",
                "/m",
                "--foreground"
            ]),
            [
                "bucketfs",
                "mount",
                "--metadata-ttl=5",
                "b",
                "/m",
                "--foreground"
            ]
        );
        // Other subcommands and flags pass untouched.
        assert_eq!(
            args(&["bucketfs", "rm", "-o", "x"]),
            ["bucketfs", "rm", "-o", "x"]
        );
        assert_eq!(args(&["bucketfs", "--version"]), ["bucketfs", "--version"]);
        // After `--` nothing is an option.
        assert_eq!(
            args(&["bucketfs", "mount", "b", "--", "-o"]),
            ["bucketfs", "mount", "b", "--", "-o"]
        );
    }

    #[test]
    fn unknown_options_are_named_and_quotes_protect_commas() {
        let e = run(&["bucketfs", "b", "/m", "-o", "endpoint=x"]).unwrap_err();
        assert!(e.contains("\"endpoint\""), "{e}");
        // `-o o=...` does not recurse into the documented -o option itself.
        assert!(run(&["bucketfs", "b", "/m", "-o", "o=x"]).is_err());
        assert_eq!(
            split_options("a=1,\"b=x,y\",,c").unwrap(),
            ["a=1", "b=x,y", "c"]
        );
        assert!(split_options("a=\"1").is_err());
        // A generic name with a value is not the generic option.
        assert!(run(&["bucketfs", "b", "/m", "-o", "ro=1"]).is_err());
    }
}
