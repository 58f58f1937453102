"""`patchwave schedule units`: whatever the schedule file and the checkout are called, the
generated units say exactly what they should — read back the way systemd reads them
(systemd.syntax(7), systemd.service(5): specifiers, quoting, `$` in ExecStart) and, where
`systemd-analyze` is installed, verified by systemd itself. A name that a unit file cannot hold
exactly (a line break would start a new setting: `ExecStartPre=` of the attacker's choosing)
is refused, and then nothing is written."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hostile import ROOT, Sandbox, assert_refused, lines

from patchwave.errors import InputError
from patchwave.fleet import schedule

SCHEDULE = lines("version: 1", "inventory: inventory.yml", "jobs:", "  - {name: digest, kind: digest, every: 1d}")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    return Sandbox(tmp_path, monkeypatch)


# --- reading a unit back as systemd does --------------------------------------------------------------

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"',
            "'": "'", "s": " "}


def words(text: str) -> list[str]:
    """extract_first_word() with EXTRACT_UNQUOTE | EXTRACT_CUNESCAPE, word after word."""
    out: list[str] = []
    i = 0
    while i < len(text):
        while i < len(text) and text[i] in " \t":
            i += 1
        if i >= len(text):
            break
        word, quote = "", None
        while i < len(text) and (quote or text[i] not in " \t"):
            char = text[i]
            if char == "\\":
                nxt = text[i + 1]
                assert nxt in _ESCAPES, f"an escape systemd would read differently: \\{nxt}"
                word += _ESCAPES[nxt]
                i += 2
                continue
            if quote and char == quote:
                quote = None
            elif not quote and char in "\"'":
                quote = char
            else:
                word += char
            i += 1
        assert quote is None, f"an unterminated quote in {text!r}"
        out.append(word)
    return out


def specifiers(text: str) -> str:
    """%% is a percent sign; any other specifier would be replaced by systemd: none is meant."""
    out, i = "", 0
    while i < len(text):
        if text[i] == "%":
            assert text[i + 1:i + 2] == "%", f"a systemd specifier %{text[i + 1:i + 2]} in {text!r}"
            out += "%"
            i += 2
        else:
            out += text[i]
            i += 1
    return out


def dollars(word: str) -> str:
    """ExecStart expands $NAME and ${NAME}; $$ is a dollar sign."""
    out, i = "", 0
    while i < len(word):
        if word[i] == "$":
            assert word[i + 1:i + 2] == "$", f"ExecStart would expand a variable in {word!r}"
            out += "$"
            i += 2
        else:
            out += word[i]
            i += 1
    return out


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections and their settings in order (comments dropped, continuations joined)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            current = stripped.strip("[]")
            sections.setdefault(current, [])
            continue
        assert current is not None and "=" in stripped, f"a line systemd would not read: {line!r}"
        key, _sep, value = stripped.partition("=")
        sections[current].append((key.strip(), value.strip()))
    assert not pending, "the file ends inside a continued line"
    return sections


def read_service(text: str) -> dict[str, object]:
    settings = parse_unit(text)
    service = dict(settings["Service"])
    assert [k for k, _v in settings["Service"]] == ["Type", "WorkingDirectory", "Environment", "EnvironmentFile",
                                                    "ExecStart", "Nice"], settings["Service"]
    assert [k for k, _v in settings["Unit"]] == ["Description", "After", "Wants"]
    env = dict(specifiers(w).split("=", 1) for w in words(service["Environment"]))
    argv = [dollars(w) for w in words(specifiers(service["ExecStart"]))]
    return {"workdir": specifiers(service["WorkingDirectory"]), "env": env, "argv": argv}


# --- the tests ------------------------------------------------------------------------------------------

AWKWARD = ["my schedule.yml", "100% sure.yml", "%n%h%i.yml", "$HOME ${PATH}.yml", 'say "hi".yml', "it's.yml",
           "a;b ; ExecStartPre=.yml", "#not-a-comment.yml", "ünïcödé.yml", "-dash.yml", "=equals=.yml"]


@pytest.mark.parametrize("name", AWKWARD)
def test_awkward_schedule_names_reach_the_unit_exactly(box: Sandbox, name: str) -> None:
    folder = box.dir / "a dir with % and $"
    folder.mkdir()
    box.write(f"{folder.name}/inventory.yml", (box.inventory.read_text()))
    path = box.write(f"{folder.name}/{name}", SCHEDULE)
    units = box.dir / "units"
    result = box.run("schedule", "units", "-s", path, "-o", units)
    assert result.code == 0, result.output
    service = read_service((units / "patchwave-schedule.service").read_text())
    assert service["env"] == {"PATCHWAVE_SCHEDULE": str(path.resolve())}
    assert service["argv"] == [str(ROOT / ".venv" / "bin" / "patchwave"), "schedule", "run"]
    assert service["workdir"] == str(ROOT)
    timer = parse_unit((units / "patchwave-schedule.timer").read_text())
    assert dict(timer["Timer"])["OnUnitActiveSec"] == "5min"
    if SYSTEMD_ANALYZE:
        verify(units)


def test_an_awkward_checkout_reaches_the_unit_exactly(tmp_path: Path) -> None:
    root = tmp_path / "check out %i $USER \"q\""
    path = tmp_path / "s.yml"
    units = schedule.units(path, root)
    service = read_service(units["patchwave-schedule.service"])
    assert service["workdir"] == str(root)
    assert service["argv"] == [str(root / ".venv" / "bin" / "patchwave"), "schedule", "run"]


def schedule_file(box: Sandbox, name: str) -> Path:
    """The schedule (valid: only its name is wrong) with its inventory beside it (a `/` in the
    name makes folders)."""
    path = box.write(name, SCHEDULE)
    (path.parent / "inventory.yml").write_text(box.inventory.read_text())
    return path


REFUSED = [
    ("a\nExecStartPre=/bin/sh -c id.yml", "a line break"),
    ("a\rExecStartPre=/bin/id.yml", "a carriage return"),
    ("tab\there.yml", "a tab"),
    ("back\\slash.yml", "a backslash"),
    ("ends-with-a-continuation\\", "a backslash"),
    ("bell\a.yml", "control character"),
    ("trailing space.yml ", "ends with a space"),
]


@pytest.mark.parametrize(("name", "why"), REFUSED, ids=["newline", "carriage-return", "tab", "backslash",
                                                         "continuation", "control", "trailing-space"])
def test_a_name_a_unit_cannot_hold_is_refused_and_nothing_is_written(box: Sandbox, name: str, why: str) -> None:
    path = schedule_file(box, name)
    units = box.dir / "units"
    result = box.run("schedule", "units", "-s", path, "-o", units)
    assert_refused(result, box, None, expect=why)
    assert "ExecStartPre" not in result.stdout
    assert not units.exists()


def test_printed_units_are_refused_the_same(box: Sandbox) -> None:
    path = schedule_file(box, "a\nExecStartPre=/bin/sh -c id.yml")
    result = box.run("schedule", "units", "-s", path)
    assert_refused(result, box, None, expect="a line break")
    assert result.stdout == ""


def test_a_checkout_a_unit_cannot_hold_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"the Patchwave checkout .* has a line break"):
        schedule.units(tmp_path / "s.yml", tmp_path / "x\nExecStartPre=/bin/id")


def verify(folder: Path) -> None:
    proc = subprocess.run([str(SYSTEMD_ANALYZE), "verify", "--man=no", "patchwave-schedule.service",
                           "patchwave-schedule.timer"], cwd=folder, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_itself_accepts_the_units(box: Sandbox) -> None:
    path = box.write("nightly 100% $HOME.yml", SCHEDULE)
    units = box.dir / "units"
    assert box.run("schedule", "units", "-s", path, "-o", units, "--every", "15").code == 0
    verify(units)
