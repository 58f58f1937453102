"""`patchwave report`: which workbooks to write, from which definitions, for which hosts and time."""

from __future__ import annotations

import multiprocessing
import os
import queue
from concurrent.futures import ProcessPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from patchwave.ansible.inventory import load_hosts
from patchwave.baseline.exceptions import load_exceptions
from patchwave.errors import InputError
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
    if progress is not None:
        progress(f"reading the inventory {inventory}", 0)
    hosts = load_hosts(inventory, cache=paths.cache / "inventory")
    if progress is not None:
        progress(f"inventory: {len(hosts):,} hosts", len(hosts))
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
        jobs.append((book, target, f"{store.shown} (definition {source})"))  # shown: the password masked
    for folder in sorted({job[1].parent for job in jobs}):
        _writable(folder)
    # the biggest workbooks first, so that the small ones fill in around them
    weight = {"compliance": 0, "trend": 1, "patch": 2, "owner": 3}
    jobs.sort(key=lambda job: weight.get(job[0].name, 9))
    workers = min(len(jobs), os.cpu_count() or 1)
    if workers < 2:
        return {"workbooks": [_write(store.url, hosts, start, group, register, job, progress) for job in jobs]}
    # workbooks are independent: one process each, as many at once as there are cores (each
    # opens the store itself; SQLite readers do not block one another); their progress comes
    # back through a queue and is shown here as it arrives
    spawn = multiprocessing.get_context("spawn")
    messages: Any = spawn.Queue()
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn, initializer=_worker_start,
                             initargs=(messages,)) as pool:
        futures = [pool.submit(_write, store.url, hosts, start, group, register, job, None) for job in jobs]
        pending = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=0.2)
            _relay(messages, progress)
    # the pool has shut down: each worker flushed its queue before it exited
    _relay(messages, progress)
    return {"workbooks": [future.result() for future in futures]}


_WORKER: dict[str, Any] = {}  # in a worker process: the queue its progress goes to


def _worker_start(messages: Any) -> None:
    _WORKER["messages"] = messages


def _relay(messages: Any, progress: Progress | None) -> None:
    while True:
        try:
            text, count = messages.get_nowait()
        except queue.Empty:
            return
        if progress is not None:
            progress(text, count)


def _writable(folder: Path) -> None:
    """Fail before any workbook is built when its folder cannot be made or written to (a
    permission, a read-only or virtual file system), naming the folder."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".pw-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"-o {folder}: workbooks cannot be written there: {exc.strerror or exc}") from None


def _write(url: str, hosts: list[Host], since: datetime | None, group: str | None, register: list[Any],
           job: tuple[Workbook, Path, str], progress: Progress | None) -> dict[str, Any]:
    book, target, source = job
    if progress is None and "messages" in _WORKER:
        progress = lambda text, count: _WORKER["messages"].put((text, count))  # noqa: E731 - a closure over the worker queue, as small as it reads
    ctx = Context(Store(url), hosts, since=since, group=group, exceptions=register)
    return Writer(progress).write(book, ctx, target, source)
