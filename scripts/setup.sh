#!/usr/bin/env bash
# Set up ofasys on a fresh machine, then optionally run the test suite or the demo.
#
#   bash scripts/setup.sh test     # set up, then run the whole test suite (what CI runs)
#   bash scripts/setup.sh demo     # set up, then run `ofasys demo`
#   bash scripts/setup.sh          # set up only
#
# One virtual environment (.venv, or $OFASYS_VENV) serves the demo, the tests and every nox session; torch is
# installed once (pinned, from pip's local cache when present) and never reinstalled per session.
# The core and every plugin are built into a local wheelhouse (.wheelhouse/) and installed from it as
# `ofasys[all,test,bench]`, so the extras mechanism is exercised exactly as a user's `pip install "ofasys[image]"`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${OFASYS_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
what=${1:-none}
shift || true

log() { printf '\n== %s\n' "$*"; }

# need_debian CMD[,CMD...] "PACKAGES" WHAT: install Debian's PACKAGES when a CMD is missing (as root), else say
# that WHAT will be skipped
need_debian() {
  local cmd missing=0
  for cmd in ${1//,/ }; do command -v "$cmd" >/dev/null || missing=1; done
  [ "$missing" = 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian's $2 (for $3)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $2 >/dev/null
  else
    echo "note: $2 missing and not root: $3 will be skipped" >&2
  fi
}

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# pip: quiet, and without the machine-specific "Location ... is ignored" noise some pip configs print
pip_() { "${PIP[@]}" "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

if ! "$VENV/bin/python" -c "import torch, torchvision, torchaudio; assert torch.__version__.startswith('2.14.1')" 2>/dev/null; then
  log "installing torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0 (once)"
  pip_ install -q torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
fi
pip_ install -q "setuptools>=68" wheel

log "building the core and the plugins into .wheelhouse/"
rm -rf .wheelhouse
mkdir -p .wheelhouse
for pkg in ./core ./plugins/ofasys-*; do
  pip_ wheel -q --no-deps --no-build-isolation -w .wheelhouse "$pkg"
done

log 'installing "ofasys[all,test,bench]" from the wheelhouse'
pip_ install -q --find-links .wheelhouse "ofasys[all,test,bench]==0.1.0"
# the versions do not change between edits: reinstall our own wheels so the environment runs this checkout
pip_ install -q --no-deps --force-reinstall .wheelhouse/*.whl

case "$what" in
  test)
    # system programs some tests use: Debian's chromium + driver (the demo page test renders the gallery in a
    # real headless browser) and espeak-ng (the audio plugin's fresh-speech test synthesises new voices)
    need_debian chromium,chromedriver "chromium chromium-driver" "the demo page test"
    need_debian espeak-ng espeak-ng "the fresh-speech test"
    log "running the test suite"
    # one pytest worker per core, each file on one worker (its module fixture trains once), one torch thread
    # per worker so the workers do not fight over the cores; OFASYS_TEST_WORKERS=0 runs in this process
    # (cores counted before OMP_NUM_THREADS is set: GNU nproc reports OMP_NUM_THREADS when it is set)
    workers=${OFASYS_TEST_WORKERS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    xdist=()
    if [ "$workers" -gt 1 ]; then xdist=(-n "$workers" --dist loadfile); fi
    set +e
    "$VENV/bin/python" -m pytest "${xdist[@]}" "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 5 ]; then
      echo "error: pytest collected no tests; failing on purpose" >&2
      exit 1
    fi
    exit "$rc"
    ;;
  demo)
    log "running ofasys demo"
    exec "$VENV/bin/ofasys" demo "$@"
    ;;
  none) log "done: activate with 'source $VENV/bin/activate'" ;;
  *) echo "usage: scripts/setup.sh [test|demo] [args...]" >&2; exit 2 ;;
esac
