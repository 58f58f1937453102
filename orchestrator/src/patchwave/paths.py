"""Where the project, its generated state and its output live.

Everything Patchwave generates stays inside the project checkout (`.patchwave/` for state and
caches, `output/` for workbooks) so nothing outside it changes except through apt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from patchwave.errors import PatchwaveError

if TYPE_CHECKING:
    from patchwave.ansible.runner import Retention


def _looks_like_root(path: Path) -> bool:
    return (path / "ansible.cfg").is_file() and (
        path / "collections" / "ansible_collections" / "patchwave" / "endpoint"
    ).is_dir()


def find_root() -> Path:
    env = os.environ.get("PATCHWAVE_ROOT")
    if env:
        root = Path(env).resolve()
        if not _looks_like_root(root):
            raise PatchwaveError(f"PATCHWAVE_ROOT={env} is not a Patchwave checkout (no ansible.cfg)")
        return root
    for candidate in [Path.cwd(), *Path.cwd().parents]:
        if _looks_like_root(candidate):
            return candidate
    installed = Path(__file__).resolve().parents[3]
    if _looks_like_root(installed):
        return installed
    raise PatchwaveError("cannot find the Patchwave checkout: run from inside it or set PATCHWAVE_ROOT")


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def state(self) -> Path:
        return Path(os.environ.get("PATCHWAVE_STATE_DIR", self.root / ".patchwave"))

    @property
    def cache(self) -> Path:
        return self.state / "cache"

    @property
    def lab(self) -> Path:
        return self.state / "lab"

    @property
    def output(self) -> Path:
        return Path(os.environ.get("PATCHWAVE_OUTPUT_DIR", self.root / "output"))

    @property
    def lab_inventory(self) -> Path:
        return self.root / "inventories" / "lab" / "hosts.yml"

    @property
    def playbooks(self) -> Path:
        return self.root / "playbooks"

    @property
    def store_url(self) -> str:
        return os.environ.get("PATCHWAVE_STORE", f"sqlite:///{self.state / 'patchwave.db'}")

    @property
    def retention(self) -> Retention:
        """How long ansible-runner run directories are kept (PATCHWAVE_ARTIFACT_RETENTION_DAYS,
        default 14 days; 0 keeps only the latest run). The store keeps every result regardless."""
        from patchwave.ansible.runner import Retention
        from patchwave.errors import InputError

        text = os.environ.get("PATCHWAVE_ARTIFACT_RETENTION_DAYS", "14")
        try:
            days = float(text)
        except ValueError:
            days = -1.0
        if not days >= 0:
            raise InputError(f"PATCHWAVE_ARTIFACT_RETENTION_DAYS={text!r}: give a number of days (0 or more)")
        return Retention(self.state, days)

    @property
    def containers_conf(self) -> Path:
        return Path(__file__).resolve().parent / "lab" / "data" / "containers.conf"


def project_paths() -> Paths:
    return Paths(find_root())
