#!/usr/bin/env bash
# Demo: build bucketfs, start a local S3-compatible server on 127.0.0.1 with a sample
# bucket, mount it at ./mnt and list it. Needs nothing installed by hand (fuse3 comes from
# apt-get when missing); run as root or as a user allowed to use /dev/fuse.
#   scripts/demo.sh [--yes]   --yes: wipe a previous demo's bucket without asking
set -euo pipefail
YES=0
for arg in "$@"; do
    case "$arg" in
        --yes | -y) YES=1 ;;
        *) echo "usage: scripts/demo.sh [--yes]" >&2; exit 2 ;;
    esac
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"
STATE="$ROOT/.demo"
MNT="$ROOT/mnt"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v fusermount3 >/dev/null || ! command -v getfattr >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq fuse3 attr >/dev/null
fi

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY
export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=bucketfs-demo AWS_SECRET_ACCESS_KEY=bucketfs-demo-secret AWS_REGION=us-east-1

echo "== building bucketfs (release; the first build takes several minutes)"
cargo build --release

# A previous demo: unmount and stop its server.
if grep -q " $MNT " /proc/self/mountinfo; then fusermount3 -u "$MNT" || fusermount3 -u -z "$MNT"; fi
if [ -d "$STATE" ]; then
    # Ask before wiping the previous demo's bucket, unless --yes or not on a terminal.
    if [ "$YES" -eq 0 ] && [ -t 0 ]; then
        read -r -p "A previous demo's server and bucket 'demo' are in $STATE: wipe them? [y/N] " answer
        case "$answer" in
            y | Y | yes) ;;
            *) echo "kept; nothing changed"; exit 1 ;;
        esac
    fi
    scripts/s3-server.sh stop "$STATE"
fi
rm -rf "$STATE" && mkdir -p "$STATE" "$MNT"

echo "== starting the local S3 server (SeaweedFS) on 127.0.0.1"
eval "$(scripts/s3-server.sh start "$STATE")"
echo "$BUCKETFS_TEST_ENDPOINT" >"$STATE/endpoint"

echo "== creating bucket 'demo' with sample objects"
"$ROOT/.venv/bin/python" - "$BUCKETFS_TEST_ENDPOINT" <<'PY'
import json, os, sys, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, proxies={}))
s3.create_bucket(Bucket="demo")
put = lambda key, body, **kw: s3.put_object(Bucket="demo", Key=key, Body=body, **kw)
put("README.txt", b"Hello from bucketfs!\nEvery key in this bucket is a file here.\n")
put("docs/guide/intro.md", b"# Intro\n\nNested 'directories' come from key prefixes.\n")
put("docs/guide/usage.md", b"# Usage\n\nls, cp, find, grep, tar all work.\n")
put("empty-dir/", b"")  # an explicit directory marker
put("data/config.json", json.dumps({"name": "demo", "version": 1}).encode(),
    ContentType="application/json", Metadata={"owner": "data-team", "reviewed": "yes"})
put("data/logo.bin", bytes(range(256)) * 64)
put("bin/tool.sh", b"#!/bin/sh\necho hi\n", Metadata={"mode": str(0o100755)})
with open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "bucketfs-demo-200m"), "wb") as f:
    chunk = os.urandom(1 << 20)
    for _ in range(200):
        f.write(chunk)
s3.upload_file(f.name, "demo", "big/object-200MiB.bin",
               Config=TransferConfig(multipart_chunksize=16 << 20))
os.remove(f.name)
PY

echo "== mounting s3://demo at $MNT"
./target/release/bucketfs mount demo "$MNT" --endpoint-url "$BUCKETFS_TEST_ENDPOINT" \
    --force-path-style --region us-east-1 --log-file "$STATE/bucketfs.log"

echo "== ls -la $MNT"
ls -la "$MNT"
echo "== find $MNT"
find "$MNT" | sort
echo "== cat $MNT/README.txt"
cat "$MNT/README.txt"
echo "== getfattr -d $MNT/data/config.json"
getfattr -d "$MNT/data/config.json" 2>/dev/null
echo "== S3 requests so far (getfattr -n user.bucketfs.stats $MNT)"
getfattr --only-values -n user.bucketfs.stats "$MNT"; echo
cat <<MSG

The bucket is mounted at $MNT (log: $STATE/bucketfs.log).
S3 endpoint:  $BUCKETFS_TEST_ENDPOINT (bucket: demo, region us-east-1)
Credentials:  AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
To mount it yourself (after unmounting it here), copy and paste:
  AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \\
    $ROOT/target/release/bucketfs mount demo $MNT --endpoint-url $BUCKETFS_TEST_ENDPOINT --force-path-style --region us-east-1
Try:  sha256sum $MNT/big/object-200MiB.bin     ls -l $MNT/docs/guide
To unmount:          fusermount3 -u $MNT
To stop the server:  scripts/s3-server.sh stop $STATE
MSG
