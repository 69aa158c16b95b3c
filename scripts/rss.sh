#!/usr/bin/env bash
# Memory at scale (by hand, not part of CI): fills a fresh bucket on the project's local
# S3 server (SeaweedFS, 127.0.0.1 only) with KEYS empty objects spread over directories,
# mounts it with the release build, walks the whole tree once with `find` (every entry
# reaches the kernel through READDIRPLUS), then lets the mount idle: the kernel is told
# to drop its dentries (its FORGETs reach the daemon) and the daemon's sweep drops idle
# listings. It reports the daemon's RSS before, at the peak, right after the walk and
# after idling, with the daemon's inode table size, as one JSON line.
#
#   scripts/rss.sh [--keys N] [--fanout F] [--max-idle-mib M]
#       defaults: 1,000,000 keys in 100 directories (two levels of 10), bound 64 MiB
#
# Exits non-zero when the walk misses keys, or when the mount does not come back to
# within M MiB of its RSS before the walk (after at most 150 s idle). Run as root (the
# kernel's dentry cache can only be dropped by root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

KEYS=1000000
FANOUT=10
MAX_IDLE_MIB=64
while [ $# -gt 0 ]; do
    case "$1" in
        --keys) KEYS="${2:?--keys N}"; shift 2 ;;
        --fanout) FANOUT="${2:?--fanout F}"; shift 2 ;;
        --max-idle-mib) MAX_IDLE_MIB="${2:?--max-idle-mib M}"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [--keys N] [--fanout F] [--max-idle-mib M]" >&2; exit 2 ;;
    esac
done
for v in "$KEYS" "$FANOUT" "$MAX_IDLE_MIB"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "error: $v is not a positive integer" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (drop_caches needs it)" >&2; exit 1; }
command -v fusermount3 >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null; }

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy NO_PROXY
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_SESSION_TOKEN
export AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=bucketfs-test AWS_SECRET_ACCESS_KEY=bucketfs-test-secret AWS_REGION=us-east-1

BIN="$ROOT/target/release/bucketfs"
BENCH="$ROOT/target/release/bucketfs-bench"
[ -x "$BIN" ] && [ -x "$BENCH" ] || cargo build --release --bins
scripts/s3-server.sh install

WORK="$(mktemp -d /tmp/bucketfs-rss.XXXXXX)"
MNT="$WORK/mnt"
LOG="$WORK/bucketfs.log"
mkdir -p "$WORK/s3" "$MNT" "$WORK/cache"
MOUNTED=0
cleanup() {
    local rc=$?
    set +e
    [ "$MOUNTED" = 1 ] && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -u -z "$MNT"; }
    scripts/s3-server.sh stop "$WORK/s3"
    if [ "$rc" -eq 0 ]; then rm -rf "$WORK"; else rm -rf "$WORK/s3"; echo "== kept $LOG" >&2; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[rss $(date +%H:%M:%S)] $*" >&2; }
rss_kib() { awk -v f="$2" '$1 == f":" {print $2}' "/proc/$1/status"; }
inodes() { getfattr --only-values -n user.bucketfs.inodes "$MNT" 2>/dev/null || echo '{}'; }

eval "$(scripts/s3-server.sh start "$WORK/s3")"
EP="$BUCKETFS_TEST_ENDPOINT"
case "$EP" in http://127.0.0.1:*) ;; *) echo "error: $EP is not on 127.0.0.1" >&2; exit 1 ;; esac
BUCKET="rss-$(date +%s)"
"$BENCH" make-bucket --endpoint-url "$EP" --bucket "$BUCKET" >/dev/null

log "putting $KEYS empty objects (2 levels of $FANOUT directories)"
"$BENCH" put-many --endpoint-url "$EP" --bucket "$BUCKET" --prefix "" --count "$KEYS" \
    --size 0 --depth 2 --fanout "$FANOUT" >"$WORK/put.json"
log "put: $(cat "$WORK/put.json")"

"$BIN" mount "$BUCKET" "$MNT" --endpoint-url "$EP" --force-path-style --region us-east-1 \
    --cache-dir "$WORK/cache" --log-file "$LOG"
MOUNTED=1
PID="$(python3 scripts/stress.py --print-daemon-pid "$MNT")"
ls "$MNT" >/dev/null
RSS0="$(rss_kib "$PID" VmRSS)"
log "daemon $PID: RSS before the walk $((RSS0 / 1024)) MiB"

T0="$(date +%s.%N)"
FOUND="$(find "$MNT" -type f | wc -l)"
T1="$(date +%s.%N)"
RSS_WALK="$(rss_kib "$PID" VmRSS)"
INODES_WALK="$(inodes)"
log "walk: $FOUND files in $(awk "BEGIN {printf \"%.1f\", $T1 - $T0}") s; RSS $((RSS_WALK / 1024)) MiB; inodes $INODES_WALK"
[ "$FOUND" -eq "$KEYS" ] || { echo "error: find saw $FOUND of $KEYS keys" >&2; exit 1; }

# Idle: the kernel forgets its dentries (FORGETs reach the daemon); the daemon's sweep
# (every 30 s) drops idle listings and returns free heap pages.
sync
echo 2 >/proc/sys/vm/drop_caches
BOUND=$((RSS0 + MAX_IDLE_MIB * 1024))
WAITED=0
RSS_IDLE="$(rss_kib "$PID" VmRSS)"
while [ "$WAITED" -lt 150 ]; do
    sleep 10
    WAITED=$((WAITED + 10))
    RSS_IDLE="$(rss_kib "$PID" VmRSS)"
    log "idle ${WAITED} s: RSS $((RSS_IDLE / 1024)) MiB; inodes $(inodes)"
    [ "$WAITED" -ge 70 ] && [ "$RSS_IDLE" -le "$BOUND" ] && break
done
PEAK="$(rss_kib "$PID" VmHWM)"
INODES_IDLE="$(inodes)"
python3 - "$KEYS" "$FOUND" "$RSS0" "$PEAK" "$RSS_WALK" "$RSS_IDLE" "$WAITED" "$T0" "$T1" \
    "$INODES_WALK" "$INODES_IDLE" "$MAX_IDLE_MIB" <<'PY'
import json, sys
a = sys.argv[1:]
mib = lambda k: round(int(k) / 1024, 1)
print(json.dumps({
    "keys": int(a[0]), "found": int(a[1]), "walk_s": round(float(a[8]) - float(a[7]), 1),
    "rss_before_mib": mib(a[2]), "rss_peak_mib": mib(a[3]), "rss_after_walk_mib": mib(a[4]),
    "rss_after_idle_mib": mib(a[5]), "idle_s": int(a[6]),
    "inodes_after_walk": json.loads(a[9] or "{}"), "inodes_after_idle": json.loads(a[10] or "{}"),
    "bound_mib": mib(a[2]) + int(a[11]),
}))
PY
if [ "$RSS_IDLE" -gt "$BOUND" ]; then
    echo "error: RSS after idling $((RSS_IDLE / 1024)) MiB, over $((BOUND / 1024)) MiB" >&2
    exit 1
fi
log "PASS"
