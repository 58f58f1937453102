#!/usr/bin/env bash
# ansible-test sanity on the collection, offline: HOME points at a cache inside the checkout
# (nothing outside it changes) that holds a stand-in for the pip bootstrap script.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export HOME="$root/.patchwave/ansible-test-home"
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
pip_version="$("$root/.venv/bin/python" - <<'PY'
import inspect
from ansible_test._internal import python_requirements as pr
src = inspect.getsource(pr.get_venv_packages)
print(src.split("pip='", 1)[1].split("'", 1)[0])
PY
)"
cp "$root/scripts/get_pip_standin.py" "$cache/get_pip_${pip_version//./_}.py"
cd "$root/collections/ansible_collections/patchwave/endpoint"
exec "$root/.venv/bin/ansible-test" sanity --venv --python 3.11 --color no "$@"
