#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, then static gates, then pytest (unit, integration on the real
# lab, end to end), then molecule. Stops at the first failing stage.
#   scripts/test.sh            everything
#   scripts/test.sh lint       static gates only
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$root/scripts/setup.sh"
cd "$root"
what="${1:-all}"
stage() { printf '\n=== %s ===\n' "$*" >&2; }

stage "ruff"
ruff check --config orchestrator/pyproject.toml orchestrator/src tests
stage "mypy (strict) on orchestrator/src"
mypy --config-file orchestrator/pyproject.toml orchestrator/src
stage "ansible-lint (production profile)"
ansible-lint --nocolor -q
stage "ansible-test sanity"
scripts/sanity.sh
[[ "$what" == lint ]] && exit 0

stage "pytest: unit, security (hostile input, claims, boundaries), integration (lab), end to end"
set +e
pytest -p no:cacheprovider tests/unit tests/security tests/integration tests/e2e
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
[[ $rc -eq 0 ]] || exit $rc

# a pytest session of its own, so the synthetic lab is down before the real-content lab comes up
stage "pytest: the real-content lab (Debian 11/12/13, the security archive's real updates)"
pytest -p no:cacheprovider tests/real

stage "molecule: every scenario (check, converge, idempotence, verify) on the lab"
(
  cd collections/ansible_collections/patchwave/endpoint
  # molecule keeps its ephemeral state under $HOME: keep that inside the checkout
  for config in extensions/molecule/*/molecule.yml; do
    scenario="$(basename "$(dirname "$config")")"
    HOME="$root/.patchwave/molecule-home" molecule test -s "$scenario"
  done
)
