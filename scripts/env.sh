# Sourced by the entry scripts: the environment every Patchwave command runs in, all inside
# the checkout (virtualenv on PATH, podman config, Ansible config and control sockets).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$root/.venv/bin:$PATH"
export CONTAINERS_CONF="$root/orchestrator/src/patchwave/lab/data/containers.conf"
export ANSIBLE_CONFIG="$root/ansible.cfg"
export ANSIBLE_SSH_CONTROL_PATH_DIR="$root/.patchwave/ansible/cp"
export PATCHWAVE_ROOT="$root"
