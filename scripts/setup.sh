#!/usr/bin/env bash
# Install everything Patchwave needs on a Debian 12 controller, idempotently:
# Debian packages through apt (only when one is missing) and a virtualenv in .venv
# with the pinned Python dependencies (rebuilt only when requirements.txt changes).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

apt_packages=(
  podman runc debootstrap        # the lab fleet: containers built from debootstrap root filesystems
  apt-utils dpkg-dev gnupg       # the lab's signed apt repository (apt-ftparchive, dpkg-deb, gpg)
  openssl debian-archive-keyring # the real-content lab: its TLS certificates; the archive keys that verify what it fetches
  openssh-client                 # ssh, ssh-keygen for the lab's keys and known_hosts
  libreoffice-calc-nogui poppler-utils  # tests open every workbook in a real spreadsheet application (PDF)
  python3 python3-venv make git
)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

python="${PYTHON:-python3}"
venv="$root/.venv"
stamp="$venv/.patchwave-requirements"
want="$(cat requirements.txt orchestrator/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: building virtualenv $venv" >&2
  "$python" -m venv "$venv"
  # (this machine's pip configuration names local indexes that may not exist: hide that noise only)
  quiet() { "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
  quiet "$venv/bin/pip" install -q --disable-pip-version-check -r requirements.txt
  quiet "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e orchestrator
  echo "$want" > "$stamp"
fi
