//! End-to-end tests of the whole-account mount (`--all-buckets`, target `s3://`) over
//! a real server on 127.0.0.1: the root lists the buckets, mkdir and rmdir create and
//! delete buckets, names that cannot be buckets are EINVAL, the root holds no files,
//! renames between buckets are EXDEV (so `mv` copies), and each bucket is served in
//! its own region (moto reports regions; SeaweedFS has one).

mod common;

use std::process::Command;

use common::*;

fn bucket_exists(endpoint: &str, name: &str) -> bool {
    rt().block_on(client_at(endpoint).head_bucket().bucket(name).send())
        .is_ok()
}

fn errno(r: std::io::Result<()>) -> i32 {
    r.expect_err("must fail").raw_os_error().unwrap()
}

#[test]
fn the_root_is_the_buckets_and_mkdir_rmdir_create_and_delete_them() {
    let a = Bucket::new("acct-a");
    let b = Bucket::new("acct-b");
    a.put("dir/hello.txt", "hello from a");
    let empty = Bucket::new("acct-empty");
    let m = Mount::new("s3://", &[]);

    // The root lists the account's buckets (the server's other tests' too).
    let names: Vec<String> = std::fs::read_dir(m.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.contains(&a.name) && names.contains(&b.name),
        "{names:?}"
    );
    assert!(std::fs::metadata(m.p(&a.name)).unwrap().is_dir());
    assert!(m.requests("ListBuckets") >= 1);

    // Inside a bucket everything is as in a one-bucket mount.
    let hello = m.p(&format!("{}/dir/hello.txt", a.name));
    assert_eq!(std::fs::read(&hello).unwrap(), b"hello from a");
    std::fs::write(m.p(&format!("{}/new.txt", b.name)), b"written").unwrap();
    assert_eq!(b.get("new.txt"), b"written");
    // An empty bucket is a directory too.
    assert!(std::fs::metadata(m.p(&empty.name)).unwrap().is_dir());
    assert_eq!(std::fs::read_dir(m.p(&empty.name)).unwrap().count(), 0);

    // No files at the root; names that cannot be buckets are EINVAL.
    assert_eq!(
        errno(std::fs::write(m.p("file-at-root"), b"x")),
        libc::EPERM
    );
    assert_eq!(
        errno(std::os::unix::fs::symlink("x", m.p("link-at-root"))),
        libc::EPERM
    );
    for bad in ["Upper-Case", "under_score", "ab", "-dash-first", "1.2.3.4"] {
        assert_eq!(
            errno(std::fs::create_dir(m.p(bad))),
            libc::EINVAL,
            "mkdir {bad}"
        );
    }
    assert!(
        m.log_text().contains("cannot be a bucket's name"),
        "{}",
        m.log_text()
    );
    // A missing bucket is ENOENT, without a bucket appearing.
    let missing = format!("t-missing-{}", std::process::id());
    assert_eq!(
        std::fs::metadata(m.p(&missing)).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );

    // mkdir is CreateBucket, rmdir DeleteBucket (only when empty).
    let created = format!("t-acct-made-{}", std::process::id());
    m.reset_stats();
    std::fs::create_dir(m.p(&created)).unwrap();
    assert_eq!(m.requests("CreateBucket"), 1);
    assert!(bucket_exists(&endpoint(), &created));
    assert_eq!(errno(std::fs::create_dir(m.p(&created))), libc::EEXIST);
    std::fs::write(m.p(&format!("{created}/f")), b"in the new bucket").unwrap();
    assert_eq!(errno(std::fs::remove_dir(m.p(&created))), libc::ENOTEMPTY);
    assert!(bucket_exists(&endpoint(), &created));

    // A rename between buckets is EXDEV; mv copies and deletes instead.
    let src = m.p(&format!("{created}/f"));
    let dst = m.p(&format!("{}/moved", b.name));
    assert_eq!(errno(std::fs::rename(&src, &dst)), libc::EXDEV);
    let mv = Command::new("mv").arg(&src).arg(&dst).status().unwrap();
    assert!(mv.success());
    assert_eq!(b.get("moved"), b"in the new bucket");
    assert!(!src.exists());

    std::fs::remove_dir(m.p(&created)).unwrap();
    assert_eq!(m.requests("DeleteBucket"), 1);
    assert!(!bucket_exists(&endpoint(), &created));
    let names: Vec<String> = std::fs::read_dir(m.p(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!names.contains(&created), "{names:?}");

    // The mount shows as the whole account.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dir = m.path().to_str().unwrap().to_string();
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&dir) && l.starts_with("s3:// ")),
        "{mounts}"
    );
}

#[test]
fn each_bucket_is_served_in_its_own_region() {
    let endpoint = moto_endpoint();
    let name = format!("t-acct-region-{}", std::process::id());
    rt().block_on(
        client_at(&endpoint)
            .create_bucket()
            .bucket(&name)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest2)
                    .build(),
            )
            .send(),
    )
    .expect("create bucket in eu-west-2");
    rt().block_on(
        client_at(&endpoint)
            .put_bucket_versioning()
            .bucket(&name)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send(),
    )
    .expect("enable versioning");
    let m = Mount::new_at(&endpoint, "s3://", &[]);
    std::fs::write(m.p(&format!("{name}/f")), b"first").unwrap();
    std::fs::write(m.p(&format!("{name}/f")), b"there").unwrap();
    assert_eq!(std::fs::read(m.p(&format!("{name}/f"))).unwrap(), b"there");
    // The versions directory is at the account's root: .versions/BUCKET/PATH/.
    let versions: Vec<_> = std::fs::read_dir(m.p(&format!(".versions/{name}/f")))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    let mut bodies: Vec<Vec<u8>> = versions.iter().map(|p| std::fs::read(p).unwrap()).collect();
    bodies.sort();
    assert_eq!(bodies, [b"first".to_vec(), b"there".to_vec()]);
    let log = m.log_text();
    assert!(
        log.lines().any(|l| l.contains("using the bucket's region")
            && l.contains("eu-west-2")
            && l.contains(&name)),
        "{log}"
    );
    // A bucket made through the mount gets the mount's region (us-east-1 here).
    let made = format!("t-acct-made-moto-{}", std::process::id());
    std::fs::create_dir(m.p(&made)).unwrap();
    let loc = rt()
        .block_on(
            client_at(&endpoint)
                .get_bucket_location()
                .bucket(&made)
                .send(),
        )
        .expect("location");
    let loc = loc
        .location_constraint()
        .map(|c| c.as_str().to_string())
        .unwrap_or_default();
    assert!(loc.is_empty() || loc == "us-east-1", "{loc}");
    std::fs::remove_dir(m.p(&made)).unwrap();
    assert!(!bucket_exists(&endpoint, &made));
}
