#!/usr/bin/env bash
# Install what the tests need and run the whole suite:
#   - fuse3 (apt-get, when fusermount3 is missing), getfattr/setfattr (attr), tree,
#     rsync and git (the write-side tests drive them);
#   - the local S3 server (SeaweedFS, pinned, in .venv) started once on 127.0.0.1, and
#     moto's server (pinned, in .venv) beside it for what SeaweedFS lacks;
#   - cargo fmt/clippy checks, unit tests, then mounted integration tests.
# Everything talks to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need_pkgs=()
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
command -v getfattr >/dev/null || need_pkgs+=(attr)
command -v tree >/dev/null || need_pkgs+=(tree)
command -v rsync >/dev/null || need_pkgs+=(rsync)
command -v git >/dev/null || need_pkgs+=(git)
command -v python3 >/dev/null || need_pkgs+=(python3 python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "installing: ${need_pkgs[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if [ ! -w /dev/fuse ]; then
    echo "error: /dev/fuse is not usable by $(id -un); run as root or a user in the fuse group" >&2
    exit 1
fi

# Loopback only: no proxies, no instance metadata, static credentials and region.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY
export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=bucketfs-test AWS_SECRET_ACCESS_KEY=bucketfs-test-secret AWS_REGION=us-east-1

scripts/s3-server.sh install
scripts/moto-server.sh install
SERVER_DIR="$(mktemp -d /tmp/bucketfs-s3.XXXXXX)"
# The tests' mountpoints (tempfile honours TMPDIR) and cache directory (the default
# cache directory is $XDG_CACHE_HOME/bucketfs) live under SERVER_DIR: cleanup unmounts
# only what this run mounted, and ~/.cache/bucketfs is never touched.
export TMPDIR="$SERVER_DIR/tmp" XDG_CACHE_HOME="$SERVER_DIR/cache"
mkdir -p "$TMPDIR" "$XDG_CACHE_HOME"
cleanup() {
    local rc=$?
    set +e
    # Unmount what a failed test left behind under this run's TMPDIR, then stop the server.
    awk -v dir="$TMPDIR/" 'index($5, dir) == 1 { print $5 }' /proc/self/mountinfo 2>/dev/null |
        while read -r mp; do
            fusermount3 -u -z "$mp" 2>/dev/null
        done
    scripts/s3-server.sh stop "$SERVER_DIR"
    scripts/moto-server.sh stop "$SERVER_DIR/moto"
    rm -rf "$SERVER_DIR"
    exit "$rc"
}
trap cleanup EXIT
eval "$(scripts/s3-server.sh start "$SERVER_DIR")"
echo "S3 server: $BUCKETFS_TEST_ENDPOINT"
eval "$(scripts/moto-server.sh start "$SERVER_DIR/moto")"
echo "moto server: $BUCKETFS_TEST_MOTO_ENDPOINT"

cargo fmt --check
cargo clippy --release --all-targets -- -D warnings
cargo test --release

# The Debian package, built and installed as an operator would, then mounted with
# mount -t and from an fstab line.
DEB="$(scripts/package.sh)"
echo "package: $DEB"
$SUDO dpkg -i "$DEB" >/dev/null
${SUDO:+$SUDO --preserve-env} scripts/package-test.sh
