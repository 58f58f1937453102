"""Offline stand-in for the get-pip bootstrap script that `ansible-test --venv` downloads.

ansible-test looks for a cached copy at ~/.ansible/test/cache/get_pip_<version>.py before it
downloads one from a host this machine cannot reach. This stand-in installs pip from the
interpreter's own ensurepip, then lets that pip install what ansible-test asked for.
"""

import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
# ensurepip leaves PIP_CONFIG_FILE=/dev/null behind, which would hide the machine's pip
# configuration (its package index settings)
os.environ.pop("PIP_CONFIG_FILE", None)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))
