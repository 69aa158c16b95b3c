#!/usr/bin/env bash
# Build the Debian package into target/debian/bucketfs_VERSION-1_ARCH.deb:
#   /usr/bin/bucketfs                       the binary (release build, debug info stripped)
#   /usr/sbin/mount.fuse.bucketfs           mount(8)'s helper for `-t fuse.bucketfs` and fstab
#   /lib/systemd/system/bucketfs@.service   Type=notify template unit
#   /usr/share/man/man1/bucketfs*.1.gz      man pages, generated from the CLI definition
#   bash, zsh and fish completions, and /usr/share/doc/bucketfs (README, examples).
# Made with dpkg-deb alone (no packaging tool to install); metadata from Cargo.toml.
#   scripts/package.sh [--no-build]     # --no-build: package target/release/bucketfs as is
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "${1:-}" != "--no-build" ]; then
    cargo build --release --locked --bin bucketfs
fi
BIN=target/release/bucketfs
[ -x "$BIN" ] || { echo "error: $BIN is missing; run without --no-build" >&2; exit 1; }

field() { sed -n "s/^$1 = \"\\(.*\\)\"/\\1/p" Cargo.toml | head -1; }
VERSION="$(field version)"
DESCRIPTION="$(field description)"
ARCH="$(dpkg --print-architecture)"
OUT=target/debian
ROOT="$OUT/bucketfs_${VERSION}-1_${ARCH}"
DEB="$ROOT.deb"
rm -rf "$ROOT" "$DEB"

install -d "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/usr/sbin" "$ROOT/lib/systemd/system" \
    "$ROOT/usr/share/man/man1" "$ROOT/usr/share/bash-completion/completions" \
    "$ROOT/usr/share/zsh/vendor-completions" "$ROOT/usr/share/fish/vendor_completions.d" \
    "$ROOT/usr/share/doc/bucketfs/examples"
objcopy --strip-debug "$BIN" "$ROOT/usr/bin/bucketfs"
chmod 0755 "$ROOT/usr/bin/bucketfs"
ln -s ../bin/bucketfs "$ROOT/usr/sbin/mount.fuse.bucketfs"
install -m 0644 packaging/bucketfs@.service "$ROOT/lib/systemd/system/"
"$BIN" manpages "$ROOT/usr/share/man/man1" 2>/dev/null
gzip -9n "$ROOT"/usr/share/man/man1/*.1
"$BIN" completions bash > "$ROOT/usr/share/bash-completion/completions/bucketfs"
"$BIN" completions zsh > "$ROOT/usr/share/zsh/vendor-completions/_bucketfs"
"$BIN" completions fish > "$ROOT/usr/share/fish/vendor_completions.d/bucketfs.fish"
install -m 0644 README.md docs/semantics.md docs/s3-features.md "$ROOT/usr/share/doc/bucketfs/"
install -m 0644 packaging/fstab.example packaging/bucketfs.conf "$ROOT/usr/share/doc/bucketfs/examples/"
cat > "$ROOT/usr/share/doc/bucketfs/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: bucketfs

Files: *
License: $(field license)
COPY
find "$ROOT/usr/share/doc" -type f -exec chmod 0644 {} +

# The newest glibc symbol version the binary uses is the libc6 it needs.
GLIBC="$(objdump -T "$ROOT/usr/bin/bucketfs" | sed -n 's/.*GLIBC_\([0-9.]*\).*/\1/p' | sort -uV | tail -1)"
SIZE="$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)"
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: bucketfs
Version: ${VERSION}-1
Architecture: ${ARCH}
Maintainer: bucketfs developers <bucketfs@localhost>
Installed-Size: ${SIZE}
Depends: fuse3, libc6 (>= ${GLIBC})
Suggests: ca-certificates
Section: utils
Priority: optional
Description: ${DESCRIPTION}
 bucketfs mounts an S3 bucket (AWS S3, MinIO, Ceph, R2 or any S3-compatible
 store) as a directory that ls, cp, rsync, tar, git and editors use as files.
 Reads stream at network speed, writes are multipart uploads that close() and
 fsync() confirm only once the data is in S3. Mount by hand, with
 mount -t fuse.bucketfs, from /etc/fstab, or with the bucketfs@.service unit.
CONTROL
dpkg-deb --root-owner-group --build "$ROOT" "$DEB" >/dev/null
rm -rf "$ROOT"
echo "$DEB"
