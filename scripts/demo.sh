#!/usr/bin/env bash
# The main job: install what is missing, then `patchwave demo` (fresh lab, a full patch cycle in
# two waves, stored, workbook written to output/).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$root/scripts/setup.sh"
cd "$root"
exec patchwave demo "$@"
