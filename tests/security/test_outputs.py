"""What Patchwave leaves behind: a store only its owner can read, and a store URL's password
nowhere in what it prints."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from patchwave.errors import PatchwaveError
from patchwave.store import Store
from patchwave.store.base import display_url


def test_a_new_store_is_private_and_an_old_one_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deep" / "pw.db"
    Store(f"sqlite:///{path}").engine  # noqa: B018 - opening the engine creates the store
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.chmod(0o644)
    Store(f"sqlite:///{path}").engine  # noqa: B018 - opening it again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("url", ["postgresql+psycopg://pw:hunter2-secret@127.0.0.1:1/pw",
                                 "mysql://pw:hunter2-secret@127.0.0.1:1/pw",
                                 "postgresql://pw:hunter2-secret@[::1/pw"])
def test_an_unusable_store_url_is_shown_masked(url: str) -> None:
    with pytest.raises(PatchwaveError) as caught:
        Store(url).engine  # noqa: B018 - opening the engine is what fails
    assert "hunter2-secret" not in str(caught.value)
    # the original error (which may quote the URL) is not chained into a traceback
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_display_url_masks_only_the_password() -> None:
    assert display_url("postgresql+psycopg://pw:s3@db.example.org:5432/pw") == \
        "postgresql+psycopg://pw:***@db.example.org:5432/pw"
    assert display_url("sqlite:////var/lib/patchwave/pw.db") == "sqlite:////var/lib/patchwave/pw.db"
