#!/bin/sh
# tools/darknet-source.sh CACHE_DIR
#
# Puts the pristine source of pjreddie/darknet 61c9d02e into
# CACHE_DIR/darknet_0.0.0+git20180914.61c9d02e.orig.tar.xz and prints that path.
#
# Used by mk/darknet.mk when the darknet/ submodule is not populated (its host
# may be unreachable).  Debian packages exactly this commit as "darknet"; its
# .orig.tar.xz is the pristine upstream tree (Debian's own patches live in the
# separate .debian.tar.xz and are NOT used).  The download goes through a
# private apt setup under CACHE_DIR/apt: deb-src entries derived from this
# machine's apt sources, own lists and cache, no change to /etc/apt, works
# without root.  A cached tarball with the right checksum is reused offline.
set -eu

VERSION=0.0.0+git20180914.61c9d02e
ORIG=darknet_${VERSION}.orig.tar.xz
SHA256=ec536ae11853846aab96183d8ec18730a46cce71f7d935768d235029329f9e93

die() {
    cat >&2 <<EOF
error: $*
       Cannot get the darknet source (pjreddie/darknet 61c9d02e). Either
         - populate the submodule:  git submodule update --init darknet
         - or fetch Debian's source package by hand (needs deb-src in apt):
             apt-get source --download-only darknet
           and copy $ORIG into $cache/
EOF
    exit 1
}

[ $# -eq 1 ] || { echo "usage: $0 CACHE_DIR" >&2; exit 2; }
mkdir -p "$1"
cache=$(cd "$1" && pwd)
tarball=$cache/$ORIG

check() { echo "$SHA256  $1" | sha256sum -c --status 2>/dev/null; }

if [ -f "$tarball" ] && check "$tarball"; then
    echo "$tarball"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found (not a Debian/Ubuntu machine)"

apt=$cache/apt
rm -rf "$apt"
mkdir -p "$apt/sources.list.d" "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/dl"

# deb-src twins of the machine's apt sources: deb822 *.sources stanzas get
# "Types: deb-src", one-line "deb ..." entries become "deb-src ...".
n=0
for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    sed -e 's/^Types:.*$/Types: deb-src/' "$f" > "$apt/sources.list.d/$(basename "$f")"
    n=$((n + 1))
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n -e 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" > "$apt/sources.list.d/$(basename "$f").list"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || die "no apt sources found in /etc/apt"

set -- \
    -o Dir::Etc::SourceList=/dev/null \
    -o Dir::Etc::SourceParts="$apt/sources.list.d" \
    -o Dir::State::Lists="$apt/lists" \
    -o Dir::Cache="$apt/cache" \
    -o Debug::NoLocking=1 \
    -o APT::Sandbox::User="$(id -un)" \
    -o Acquire::Languages=none \
    -q

echo "darknet-source: fetching Debian's source index (private apt setup in $apt)" >&2
# Some third-party repositories have no sources; apt-get source below decides.
apt-get "$@" update >"$apt/update.log" 2>&1 || echo "darknet-source: apt-get update reported errors, see $apt/update.log" >&2

echo "darknet-source: apt-get source --download-only darknet" >&2
(cd "$apt/dl" && apt-get "$@" source --download-only darknet) >"$apt/source.log" 2>&1 \
    || { cat "$apt/source.log" >&2; die "apt-get source --download-only darknet failed"; }

[ -f "$apt/dl/$ORIG" ] || { ls "$apt/dl" >&2; die "Debian's darknet source is not upstream version $VERSION"; }
check "$apt/dl/$ORIG" || die "$ORIG has the wrong SHA-256 (expected $SHA256)"

mv "$apt/dl/$ORIG" "$tarball"
# Keep Debian's .dsc and .debian.tar.xz for reference; drop the 20 MB of lists.
mkdir -p "$cache/debian"
mv "$apt/dl/"* "$cache/debian/" 2>/dev/null || true
rm -rf "$apt"
echo "$tarball"
