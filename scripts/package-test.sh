#!/usr/bin/env bash
# The installed Debian package, used as an operator would: its files are where Debian
# looks for them, its unit passes systemd's checks, and the bucket mounts through
# mount(8) both as `mount -t fuse.bucketfs` and from an fstab line (`mount -T FILE`),
# showing as type fuse.bucketfs with the bucket as its source.
# Run by scripts/test.sh after `dpkg -i`, with the test server's environment
# (BUCKETFS_TEST_ENDPOINT, static credentials) and as root (mount(8) mounts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${BUCKETFS_TEST_ENDPOINT:?the URL of the test S3 server}"
PY="${BUCKETFS_VENV:-$PWD/.venv}/bin/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bucketfs-pkg.XXXXXX")"
fail() { echo "package test FAILED: $*" >&2; exit 1; }
cleanup() {
    local rc=$?
    for m in "$WORK"/m1 "$WORK"/m2; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m"
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT

dpkg-query -W -f='${Status}\n' bucketfs | grep -qx "install ok installed" || fail "bucketfs is not installed"
for f in /usr/bin/bucketfs /sbin/mount.fuse.bucketfs /lib/systemd/system/bucketfs@.service \
    /usr/share/man/man1/bucketfs.1.gz /usr/share/man/man1/bucketfs-mount.1.gz \
    /usr/share/bash-completion/completions/bucketfs /usr/share/zsh/vendor-completions/_bucketfs \
    /usr/share/fish/vendor_completions.d/bucketfs.fish /usr/share/doc/bucketfs/examples/fstab.example; do
    [ -e "$f" ] || fail "the package lacks $f"
done
[ "$(readlink -f /sbin/mount.fuse.bucketfs)" = "$(readlink -f /usr/bin/bucketfs)" ] ||
    fail "mount.fuse.bucketfs is not the bucketfs binary"
/usr/bin/bucketfs --version | grep -q "^bucketfs " || fail "bucketfs --version"
bash -c 'source /usr/share/bash-completion/completions/bucketfs && complete -p bucketfs' |
    grep -q "_bucketfs" || fail "the bash completion does not register"
zcat /usr/share/man/man1/bucketfs-mount.1.gz | grep -q 'endpoint\\-url' ||
    fail "bucketfs-mount(1) lacks --endpoint-url"
cp /lib/systemd/system/bucketfs@.service "$WORK/bucketfs@ci.service"
systemd-analyze verify --man=no "$WORK/bucketfs@ci.service" || fail "systemd-analyze verify of the unit"
grep -qx "Type=notify" /lib/systemd/system/bucketfs@.service || fail "the unit is not Type=notify"

BUCKET="pkg-$(date +%s)-$$"
s3() { "$PY" -c "
import boto3, sys
c = boto3.client('s3', endpoint_url='$BUCKETFS_TEST_ENDPOINT', region_name='us-east-1')
$1"; }
s3 "c.create_bucket(Bucket='$BUCKET'); c.put_object(Bucket='$BUCKET', Key='docs/readme.txt', Body=b'from the bucket\n')"
mkdir -p "$WORK/m1" "$WORK/m2"
OPTS="endpoint_url=$BUCKETFS_TEST_ENDPOINT,region=us-east-1,cache_dir=$WORK/cache"
mkdir -p "$WORK/cache"

# mount -t: read-write, a file copied in is in the bucket after umount.
mount -t fuse.bucketfs "$BUCKET" "$WORK/m1" -o "$OPTS,log_file=$WORK/m1.log"
[ "$(findmnt -n -o FSTYPE,SOURCE "$WORK/m1" | tr -s ' ')" = "fuse.bucketfs $BUCKET" ] ||
    fail "mount -t: $(findmnt -n "$WORK/m1")"
[ "$(cat "$WORK/m1/docs/readme.txt")" = "from the bucket" ] || fail "mount -t: reading docs/readme.txt"
printf 'written through mount -t\n' > "$WORK/m1/docs/new.txt"
umount "$WORK/m1"
got="$(s3 "sys.stdout.write(c.get_object(Bucket='$BUCKET', Key='docs/new.txt')['Body'].read().decode())")"
[ "$got" = "written through mount -t" ] || fail "docs/new.txt in the bucket is '$got'"

# An fstab line, as the README gives it: a prefix, read-only, generic options.
printf '%s %s fuse.bucketfs _netdev,nofail,allow_other,x-systemd.automount,%s,log_file=%s,ro 0 0\n' \
    "$BUCKET/docs" "$WORK/m2" "$OPTS" "$WORK/m2.log" > "$WORK/fstab"
mount -T "$WORK/fstab" "$WORK/m2"
[ "$(findmnt -n -o FSTYPE,SOURCE "$WORK/m2" | tr -s ' ')" = "fuse.bucketfs $BUCKET/docs" ] ||
    fail "fstab: $(findmnt -n "$WORK/m2")"
findmnt -n -o OPTIONS "$WORK/m2" | tr ',' '\n' | grep -qx ro || fail "fstab: the mount is not ro"
[ "$(cat "$WORK/m2/new.txt")" = "written through mount -t" ] || fail "fstab: reading new.txt"
if err="$(touch "$WORK/m2/x" 2>&1)"; then fail "fstab: a ro mount took a write"; fi
case "$err" in *"Read-only file system"*) ;; *) fail "fstab: write error '$err'" ;; esac
umount "$WORK/m2"
s3 "
for o in c.list_objects_v2(Bucket='$BUCKET').get('Contents', []): c.delete_object(Bucket='$BUCKET', Key=o['Key'])
c.delete_bucket(Bucket='$BUCKET')"
echo "package test: ok (files, unit, mount -t fuse.bucketfs, fstab line)"
