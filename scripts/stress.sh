#!/usr/bin/env bash
# Stress test (by hand, not part of CI): mounts a fresh bucket on the project's local S3
# server (SeaweedFS, 127.0.0.1 only) with the release build of bucketfs and runs
# scripts/stress.py against it: P processes creating, writing (sequential, random-offset,
# appends, multipart-sized files), reading back and comparing sha256, renaming, unlinking,
# making and removing directories and listing them, for N minutes, with a 120 s hang
# watchdog and the daemon's RSS reported every 30 s.
#
#   scripts/stress.sh [--minutes N] [--procs P]      # defaults: 10 minutes, 16 processes
#
# Exits non-zero when the driver saw any error, data mismatch, listing miss, ghost entry
# or hang (its last output line is a JSON summary). On failure the mount's log is kept and
# its path printed. Run as root or as a user allowed to use /dev/fuse.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

MINUTES=10
PROCS=16
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) MINUTES="${2:?--minutes N}"; shift 2 ;;
        --minutes=*) MINUTES="${1#*=}"; shift ;;
        --procs) PROCS="${2:?--procs P}"; shift 2 ;;
        --procs=*) PROCS="${1#*=}"; shift ;;
        --seed) EXTRA+=(--seed "${2:?--seed S}"); shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [--minutes N] [--procs P] [--seed S]" >&2; exit 2 ;;
    esac
done
[[ "$MINUTES" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "error: --minutes wants a number" >&2; exit 2; }
[[ "$PROCS" =~ ^[1-9][0-9]*$ ]] || { echo "error: --procs wants a positive integer" >&2; exit 2; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need_pkgs=()
command -v fusermount3 >/dev/null || need_pkgs+=(fuse3)
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
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy NO_PROXY
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_SESSION_TOKEN
export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=bucketfs-test AWS_SECRET_ACCESS_KEY=bucketfs-test-secret AWS_REGION=us-east-1

BIN="$ROOT/target/release/bucketfs"
BENCH="$ROOT/target/release/bucketfs-bench"
if [ ! -x "$BIN" ] || [ ! -x "$BENCH" ]; then
    echo "== building release binaries"
    cargo build --release --bins
fi

scripts/s3-server.sh install

WORK="$(mktemp -d /tmp/bucketfs-stress.XXXXXX)"
SERVER_DIR="$WORK/s3"
MNT="$WORK/mnt"
LOG="$WORK/bucketfs.log"
mkdir -p "$SERVER_DIR" "$MNT" "$WORK/cache"
MOUNTED=0
DAEMON_PID=""
EP=""
BUCKET=""

mounted() { awk -v m="$MNT" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

cleanup() {
    local rc=$?
    set +e
    if [ "$MOUNTED" = 1 ] && mounted; then
        # Only our own mount. A clean unmount lets the daemon finish its uploads first.
        if ! fusermount3 -u "$MNT" 2>/dev/null; then
            echo "== $MNT busy; lazy unmount"
            fusermount3 -u -z "$MNT"
        fi
    fi
    if [ -n "$DAEMON_PID" ]; then
        # Let the daemon finish pending uploads and exit before the server goes (bounded).
        for _ in $(seq 1 300); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$DAEMON_PID" 2>/dev/null; then
            echo "== bucketfs daemon $DAEMON_PID still running 60 s after unmount; SIGKILL"
            kill -9 "$DAEMON_PID"
            rc=1
        fi
    fi
    if [ "$rc" -ne 0 ] && [ -n "${EP:-}" ]; then
        # What the bucket really holds, to compare with the problems reported.
        "$ROOT/.venv/bin/python" - "$EP" "$BUCKET" >"$WORK/keys.txt" 2>&1 <<'PY'
import sys, boto3
from botocore.config import Config
c = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                 config=Config(s3={"addressing_style": "path"}, proxies={}))
for page in c.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2]):
    for o in page.get("Contents", []):
        print(o["Key"], o["Size"], o["ETag"], o["LastModified"].isoformat())
PY
    fi
    scripts/s3-server.sh stop "$SERVER_DIR"
    if [ -s "$LOG" ]; then
        echo "== mount log: $(grep -c . "$LOG") lines, $(grep -cE ' (WARN|ERROR) ' "$LOG") warnings/errors"
        grep -E ' (WARN|ERROR) ' "$LOG" | head -20
        grep -E 'S3 requests' "$LOG" | tail -1
    fi
    if [ "$rc" -eq 0 ]; then
        rm -rf "$WORK"
    else
        # Keep the log and the driver's output; drop the bulky server data and staging files.
        rm -rf "$SERVER_DIR" "$WORK/cache"
        rmdir "$MNT" 2>/dev/null
        echo "== FAILED (exit $rc); kept $LOG, $WORK/stress.out and $WORK/keys.txt (the bucket's keys)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$(scripts/s3-server.sh start "$SERVER_DIR")"
EP="$BUCKETFS_TEST_ENDPOINT"
case "$EP" in
    http://127.0.0.1:*) ;;
    *) echo "error: S3 endpoint $EP is not on 127.0.0.1" >&2; exit 1 ;;
esac
echo "== S3 server: $EP (data in $SERVER_DIR)"

BUCKET="stress-$(date +%s)"
"$BENCH" make-bucket --endpoint-url "$EP" --bucket "$BUCKET"

echo "== mounting $BUCKET at $MNT (log $LOG)"
"$BIN" mount "$BUCKET" "$MNT" --endpoint-url "$EP" --force-path-style --region us-east-1 \
    --cache-dir "$WORK/cache" --log-file "$LOG"
MOUNTED=1
mounted || { echo "error: $MNT is not mounted after bucketfs returned" >&2; exit 1; }
DAEMON_PID="$(python3 scripts/stress.py --print-daemon-pid "$MNT")" || {
    echo "error: no bucketfs process serving $MNT found" >&2; exit 1; }
echo "== bucketfs daemon pid $DAEMON_PID"

echo "== stress: $PROCS processes for $MINUTES minutes"
set +e
python3 -u scripts/stress.py --mount "$MNT" --minutes "$MINUTES" --procs "$PROCS" \
    --daemon-pid "$DAEMON_PID" ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 | tee "$WORK/stress.out"
STRESS_RC=${PIPESTATUS[0]}
set -e

echo "== unmounting $MNT"
if fusermount3 -u "$MNT"; then
    MOUNTED=0
else
    echo "error: unmount of $MNT failed" >&2
    [ "$STRESS_RC" -ne 0 ] || STRESS_RC=1
fi
if [ "$STRESS_RC" -eq 0 ]; then
    echo "== stress: PASS"
else
    echo "== stress: FAIL (driver exit $STRESS_RC)"
fi
exit "$STRESS_RC"
