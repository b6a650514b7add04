#!/usr/bin/env bash
# Install the Debian font packages that the "glyphs" dataset renders CJK ideographs from: each adds
# at least one distinct face (renamed copies such as fonts-takao or fonts-konatu add none).
# Idempotent and quiet: already-installed packages are skipped, packages this release does not
# have are reported and skipped. Needs root (or sudo) and apt-get.
set -euo pipefail

PACKAGES=(
  fonts-arphic-bkai00mp fonts-arphic-bsmi00lp fonts-arphic-gbsn00lp fonts-arphic-gkai00mp
  fonts-arphic-ukai fonts-arphic-uming
  fonts-hanazono fonts-horai-umefont fonts-ipaexfont-gothic fonts-ipaexfont-mincho
  fonts-ipafont-gothic fonts-ipafont-mincho fonts-ipamj-mincho fonts-komatuna
  fonts-kouzan-mouhitsu fonts-misaki fonts-motoya-l-cedar fonts-motoya-l-maruberi fonts-mplus
  fonts-noto-cjk fonts-noto-cjk-extra fonts-seto
  fonts-unfonts-core fonts-unfonts-extra fonts-vlgothic fonts-wqy-microhei fonts-wqy-zenhei
)

if [ "$(id -u)" = "0" ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "install-glyph-fonts: needs root or sudo to run apt-get" >&2
  exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-glyph-fonts: all ${#PACKAGES[@]} font packages already installed"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
quiet() {  # run quietly; show the output only when the command fails
  "$@" >"$log" 2>&1 || { cat "$log" >&2; return 1; }
}
quiet "${SUDO[@]}" apt-get update
available=()
for pkg in "${missing[@]}"; do
  if apt-cache show "$pkg" >/dev/null 2>&1; then
    available+=("$pkg")
  else
    echo "install-glyph-fonts: package $pkg is not available in this release, skipped" >&2
  fi
done
if [ "${#available[@]}" -gt 0 ]; then
  quiet "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${available[@]}"
  echo "install-glyph-fonts: installed ${#available[@]} package(s): ${available[*]}"
fi
