"""`patchwave report`: which workbooks to write, from which definitions, for which hosts and time."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from patchwave.baseline import load_exceptions
from patchwave.errors import InputError
from patchwave.inventory import load_hosts
from patchwave.models import Host
from patchwave.paths import Paths
from patchwave.reporting.datasets import Context
from patchwave.reporting.definitions import STANDARD, Workbook, load_workbook_definition, standard
from patchwave.reporting.engine import Progress, Writer
from patchwave.store import Store


def write_reports(paths: Paths, store: Store, inventory: Path, kind: str, definitions: list[Path],
                  output: Path | None, since: str | None, group: str | None, exceptions: Path | None,
                  progress: Progress | None = None) -> dict[str, Any]:
    kinds = list(STANDARD) if kind == "all" else [kind]
    if kind != "all" and kind not in STANDARD:
        raise InputError(f"--type {kind}: use one of {', '.join(STANDARD)} or all")
    if definitions:
        kinds = [] if kind == "all" else kinds
    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since).replace(tzinfo=UTC)
        except ValueError as exc:
            raise InputError(f"--since {since!r}: use a date YYYY-MM-DD") from exc
    hosts = load_hosts(inventory)
    if group is not None and group not in {g for h in hosts for g in h.groups}:
        raise InputError(f"--group {group}: no such group in {inventory}")
    register = load_exceptions(exceptions) if exceptions is not None else []
    books = [standard(paths.root / "reports", k) for k in kinds] + [(load_workbook_definition(d), d) for d in definitions]
    several = len(books) > 1
    if output is not None and several and output.suffix == ".xlsx":
        raise InputError(f"-o {output}: several workbooks need a directory")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    jobs = []
    for book, source in books:
        target = (output if output is not None and not several and output.suffix == ".xlsx"
                  else (output or paths.output) / f"{book.name}-{stamp}.xlsx")
        jobs.append((book, target, f"{store.url} (definition {source})"))
    # the biggest workbooks first, so that the small ones fill in around them
    weight = {"compliance": 0, "trend": 1, "patch": 2, "owner": 3}
    jobs.sort(key=lambda job: weight.get(job[0].name, 9))
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers < 2:
        return {"workbooks": [_write(store.url, hosts, start, group, register, job, progress) for job in jobs]}
    # workbooks are independent: one process each, as many at once as there are cores (each
    # opens the store itself; SQLite readers do not block one another)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_write, store.url, hosts, start, group, register, job, None) for job in jobs]
        written = []
        for (book, _target, _source), future in zip(jobs, futures, strict=True):
            written.append(future.result())
            if progress is not None:
                progress(f"written: {book.name}", 0)
    return {"workbooks": written}


def _write(url: str, hosts: list[Host], since: datetime | None, group: str | None, register: list[Any],
           job: tuple[Workbook, Path, str], progress: Progress | None) -> dict[str, Any]:
    book, target, source = job
    ctx = Context(Store(url), hosts, since=since, group=group, exceptions=register)
    return Writer(progress).write(book, ctx, target, source)
