#!/usr/bin/env bash
# Runs every test. On a fresh Debian machine (as root) it first installs the
# real peers the end-to-end tests talk to: swaks, Postfix for smtp-sink /
# smtp-source, and Chromium with its WebDriver for the browser tests. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v swaks >/dev/null || need+=(swaks)
# swaks speaks STARTTLS through Net::SSLeay (only a Recommends of swaks).
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl)
command -v smtp-sink >/dev/null || need+=(postfix)
command -v python3 >/dev/null || need+=(python3)
# The browser tests: headless Chromium driven over WebDriver, with a font
# for the Japanese in their screenshots.
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)
# Protected attachments: the zip is opened with 7-Zip as a recipient would.
command -v 7z >/dev/null || need+=(p7zip-full)
# Text in pictures: the real tesseract, with Japanese.
command -v tesseract >/dev/null || need+=(tesseract-ocr)
[ -f /usr/share/tesseract-ocr/5/tessdata/jpn.traineddata ] || need+=(tesseract-ocr-jpn)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need[*]} (install them, or run as root to let this script do it)" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Postfix only for its test tools: no mail system is configured or started.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Independent checks from Python: dkimpy verifies tomare's DKIM signatures
# (PyNaCl for Ed25519), pyzipper opens the AES zip, Pillow draws the
# pictures OCR reads.
if ! python3 -c "import dkim, nacl, pyzipper, PIL" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check dkimpy pynacl pyzipper pillow 2>&1 | grep -v "^WARNING" || true
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# The robustness run over the shared corpus, where it exists.
if [ -x scripts/corpus-check.sh ] && [ -d ../shared/corpus ]; then
  scripts/corpus-check.sh ../shared/corpus || status=1
fi

# One closing line for every runner above: "N passed, N failed".
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
