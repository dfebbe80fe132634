#!/bin/sh
# tools/darknet-prepare.sh PRISTINE PATCH_DIR DEST
#
# Makes DEST the pristine darknet source plus PATCH_DIR/*.patch (applied in
# name order with patch -p1, no fuzz).  PRISTINE is a source folder (the
# darknet/ submodule; .git is skipped) or Debian's .orig.tar.xz.
#
# The tree is assembled and patched in DEST.tmp, then only files whose
# content differs are copied into DEST (and files gone from the patched tree
# are removed), so make's timestamps stay meaningful: changing one patch
# recompiles only the files it touches.
set -eu

[ $# -eq 3 ] || { echo "usage: $0 PRISTINE PATCH_DIR DEST" >&2; exit 2; }
pristine=$1 patchdir=$2 dest=$3
tmp=$dest.tmp

rm -rf "$tmp"
mkdir -p "$tmp" "$dest"
if [ -d "$pristine" ]; then
    (cd "$pristine" && tar --exclude=.git -cf - .) | tar -C "$tmp" -xf -
else
    tar -C "$tmp" --strip-components=1 -xJf "$pristine"
fi

for p in "$patchdir"/*.patch; do
    [ -f "$p" ] || continue
    echo "  PATCH   $p"
    if ! patch -d "$tmp" -p1 --batch --forward --fuzz=0 --no-backup-if-mismatch -s < "$p"; then
        echo "error: $p does not apply to $pristine (rejects in $tmp)" >&2
        exit 1
    fi
done

if [ -z "$(ls -A "$dest")" ]; then
    # First time: the patched tree simply becomes DEST.
    rmdir "$dest"
    mv "$tmp" "$dest"
    echo "  SYNC    $dest (new)"
    exit 0
fi

changed=0
(cd "$tmp" && find . -type f) > "$tmp.files"
while IFS= read -r f; do
    if ! cmp -s "$tmp/$f" "$dest/$f"; then
        mkdir -p "$(dirname "$dest/$f")"
        cp "$tmp/$f" "$dest/$f"
        changed=$((changed + 1))
    fi
done < "$tmp.files"
(cd "$dest" && find . -type f ! -name '.spidarknet-*') > "$tmp.files"
while IFS= read -r f; do
    if [ ! -e "$tmp/$f" ]; then
        rm -f "$dest/$f"
        changed=$((changed + 1))
    fi
done < "$tmp.files"
rm -rf "$tmp" "$tmp.files"
echo "  SYNC    $dest ($changed files changed)"
