"""Errors an admin can act on, destructive commands that ask first, stopping within 2 s, CLI polish.

Every test drives the real `helpdesk-kpi` as a subprocess (issue 16, items 6, 8, 9 and 10).
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox import Sandbox
from kpi_core.cli import TASKS, build_parser
from kpi_core.store import open_store

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "kpi_core.cli"]
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]+(Error|Exception|Interrupt)\b")

pytestmark = pytest.mark.sandbox(seed=5, tickets=60, names=("zendesk", "freshdesk"))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HELPDESK_KPI_")}


def run(*args: str, cwd: Path = ROOT, timeout: float = 120, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=clean_env(), cwd=cwd, timeout=timeout,
                          **options)


def no_class_names(result: subprocess.CompletedProcess[str]) -> None:
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    assert not CLASS_NAME.search(text), f"an exception class name reached the user: {text!r}"


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    os.chmod(path, 0o600)
    return path


@pytest.fixture(scope="module")
def synced(module_sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config for the module's sandbox whose store was synced and computed once."""
    folder = tmp_path_factory.mktemp("synced")
    config = write_config(folder / "helpdesk-kpi.toml", module_sandbox.config_toml(str(folder / "store.sqlite")))
    assert run("sync", "--config", str(config)).returncode == 0
    assert run("compute", "--config", str(config)).returncode == 0
    return config


# --- item 6: every error an admin can act on ------------------------------------------------------


def test_no_command_module_prints_an_exception_class_name() -> None:
    for module in [*sorted((ROOT / "kpi_core").glob("cli*.py")), ROOT / "kpi_core" / "sync.py"]:
        text = module.read_text()
        assert "type(exc).__name__" not in text and "type(e).__name__" not in text, module


def _as_another_user() -> list[str]:
    """As root, run the child as `nobody` (root writes read-only files anyway)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a file read-only for the child")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@contextmanager
def _passable_by_others(*places: Path) -> Iterator[None]:
    """Let `nobody` pass through the folders above the checkout and its venv while the test runs: a clone in a
    `mktemp -d` folder (mode 0700) would otherwise hide the program from the child. Modes are restored after."""
    changed: list[tuple[Path, int]] = []
    if os.geteuid() == 0:
        for place in places:
            for folder in [place, *place.parents]:
                mode = folder.stat().st_mode
                if not mode & stat.S_IXOTH and folder not in [c[0] for c in changed]:
                    changed.append((folder, mode))
                    os.chmod(folder, mode | stat.S_IXOTH)
    try:
        yield
    finally:
        for folder, mode in changed:
            os.chmod(folder, stat.S_IMODE(mode))


def test_a_read_only_store_is_called_read_only() -> None:
    folder = Path(tempfile.mkdtemp(prefix="ro-store-"))
    try:
        store_path = folder / "store.sqlite"
        open_store(store_path).close()
        for leftover in folder.glob("store.sqlite-*"):
            leftover.unlink()
        config = folder / "c.toml"
        config.write_text(f'[store]\npath = "{store_path}"\n')
        os.chmod(config, 0o644)
        os.chmod(store_path, 0o444)
        os.chmod(folder, 0o555)
        with _passable_by_others(ROOT, Path(sys.prefix)):
            result = subprocess.run([*_as_another_user(), *CLI, "kpis", "--config", str(config)],
                                    capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=60)
        assert result.returncode == 1
        assert f"{store_path}: the store is read-only" in result.stderr
        assert "damaged" not in result.stderr
        no_class_names(result)
    finally:
        os.chmod(folder, 0o755)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


SURVEY_ROWS = [("id", "score", "responded_at"), ("a1", "9", "2026-10-02"), ("a2", "3", "2026-10-03"),
               ("a3", "10", "2026-10-04")]
SPREADSHEET_FLAVOURS = [("utf-16", ","), ("utf-8-sig", ";"), ("utf-8", ";"), ("utf-16-le", "\t")]
FUTURE = (datetime.now(timezone.utc).date() + timedelta(days=5)).isoformat()


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The commands that need no helpdesk, each on its own store, run side by side once for the module
    (a CLI start costs seconds); the tests below read their results by name."""
    folder = tmp_path_factory.mktemp("offline")
    commands: dict[str, list[str]] = {}

    def config(name: str) -> str:
        return str(write_config(folder / f"{name}.toml", f'[store]\npath = "{folder / name}.sqlite"\n'))

    commands["future since"] = ["kpis", "--config", config("a"), "--since", FUTURE]
    commands["backwards"] = ["kpis", "--config", config("b"), "--since", "2026-03-10", "--until", "2026-03-01"]
    commands["max lag"] = ["status", "--config", config("c"), "--max-lag", "soon"]
    commands["report"] = ["report", "--config", config("d"), "--out", str(folder / "no" / "such" / "r.html")]
    latin = folder / "latin.csv"
    latin.write_bytes("id,score,responded_at,comment\r\na,9,2026-10-02,tr\xe8s bien\r\n".encode("latin-1"))
    commands["latin"] = ["surveys", "import", str(latin), "--kind", "nps", "--scale", "0-10", "--config", config("e")]
    commands["scale"] = ["surveys", "import", str(latin), "--kind", "nps", "--scale", "0-11", "--config", config("f")]
    for i, (encoding, separator) in enumerate(SPREADSHEET_FLAVOURS):
        answers = folder / f"answers-{i}.csv"
        answers.write_bytes("\r\n".join(separator.join(row) for row in SURVEY_ROWS).encode(encoding))
        commands[f"surveys {encoding} {separator!r}"] = ["surveys", "import", str(answers), "--kind", "nps",
                                                         "--scale", "0-10", "--config", config(f"s{i}")]
    inputs = folder / "inputs.csv"
    inputs.write_bytes(codecs.BOM_UTF8 + b"kind;start;end;value\r\noperating_cost;2026-10-01;2026-11-01;12500,50\r\n"
                       b"orders;2026-10-01;2026-11-01;800\r\n")
    commands["inputs"] = ["inputs", "import", str(inputs), "--config", config("inputs")]
    children = {name: subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env=clean_env(), cwd=ROOT) for name, args in commands.items()}
    results: dict[str, Any] = {"folder": folder}
    for name, child in children.items():
        out, err = child.communicate(timeout=120)
        results[name] = subprocess.CompletedProcess(commands[name], child.returncode, out, err)
    return results


def test_a_since_after_the_default_until_says_so(offline: dict[str, Any]) -> None:
    result = offline["future since"]
    assert result.returncode == 2
    assert f"--since {FUTURE} is in the future" in result.stderr
    backwards = offline["backwards"]
    assert backwards.returncode == 2
    assert "--until 2026-03-01 must be after --since 2026-03-10" in backwards.stderr
    no_class_names(backwards)


@pytest.mark.parametrize(("encoding", "separator"), SPREADSHEET_FLAVOURS)
def test_survey_csv_in_any_spreadsheet_encoding_and_separator(offline: dict[str, Any], encoding: str,
                                                              separator: str) -> None:
    result = offline[f"surveys {encoding} {separator!r}"]
    assert result.returncode == 0, result.stderr
    assert "3 of 3 nps answers stored" in result.stdout


def test_inputs_csv_with_semicolons_bom_and_decimal_comma(offline: dict[str, Any]) -> None:
    result = offline["inputs"]
    assert result.returncode == 0, result.stderr
    assert "2 business inputs stored" in result.stdout
    stored = open_store(offline["folder"] / "inputs.sqlite")
    try:
        values = dict(stored.db.execute("SELECT kind, value FROM kpi_inputs").fetchall())
    finally:
        stored.close()
    assert values == {"operating_cost": 12500.5, "orders": 800.0}


def test_an_unreadable_csv_and_an_unknown_scale_are_one_sentence(offline: dict[str, Any]) -> None:
    result = offline["latin"]
    assert result.returncode == 2
    assert f"{offline['folder'] / 'latin.csv'}: is not UTF-8 or UTF-16 text" in result.stderr
    no_class_names(result)
    scale = offline["scale"]
    assert scale.returncode == 2 and "--scale 0-11: unknown scale" in scale.stderr
    no_class_names(scale)


def test_a_bad_max_lag_is_a_usage_error(offline: dict[str, Any]) -> None:
    result = offline["max lag"]
    assert result.returncode == 2
    assert '--max-lag soon: expected a duration such as "30s"' in result.stderr
    no_class_names(result)


def test_report_into_a_missing_folder_is_refused_and_creates_nothing(offline: dict[str, Any]) -> None:
    result = offline["report"]
    assert result.returncode == 2
    assert f"the folder {offline['folder'] / 'no' / 'such'} does not exist" in result.stderr
    assert not (offline["folder"] / "no").exists()


def test_a_closed_pipe_ends_quietly(synced: Path) -> None:
    child = subprocess.Popen([*CLI, "kpis", "--config", str(synced), "--period", "day", "--since",
                              (date.today() - timedelta(days=200)).isoformat(), "--format", "json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(), cwd=ROOT)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.readline()
    child.stdout.close()  # as `| head -1` does
    assert child.wait(timeout=60) == 0
    assert child.stderr.read().decode() == ""


def test_connection_retries_name_the_source_and_host_and_the_error_is_printed_once(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f'[store]\npath = "{tmp_path / "s.sqlite"}"\n[connectors.freshdesk]\n'
                                               'base_url = "http://127.0.0.1:9"\napi_key = "k"\nmax_attempts = 2\n')
    result = run("sync", "--config", str(config))
    assert result.returncode == 1
    retries = [line for line in result.stderr.splitlines() if "(retry 1 in" in line]
    assert len(retries) == 1 and "freshdesk: GET /api/v2/" in retries[0] and "cannot reach 127.0.0.1:9" in retries[0]
    failures = [line for line in result.stderr.splitlines() if "cannot reach" in line and "retry" not in line]
    assert failures == [line for line in failures if line.startswith("freshdesk: FAILED: GET /api/v2/")]
    assert len(failures) == 1
    no_class_names(result)


def test_push_prints_a_refusal_once(synced: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "wb.toml", synced.read_text() + '\n[writeback]\nenabled = true\n\n'
                          '[[writeback.mappings]]\nhelpdesk = "zendesk"\nobject = "ticket"\n'
                          'metric = "first_response_minutes"\nfield = "999999"\n')
    result = run("push", "--config", str(config), "--source", "zendesk")
    assert result.returncode == 1
    assert result.stderr.count("the helpdesk has no such field") == 1, result.stderr


def test_sync_and_status_mean_the_same_by_records(synced: Path) -> None:
    result = run("sync", "--config", str(synced), "--source", "zendesk")
    assert result.returncode == 0, result.stderr
    stored = int(re.search(r"; ([\d,]+) records \(tickets and conversations\) stored", result.stdout)
                 .group(1).replace(",", ""))  # type: ignore[union-attr]
    status = run("status", "--config", str(synced), "--format", "json")
    assert json.loads(status.stdout)["sources"]["zendesk"]["records"] == stored


# --- item 8: destructive commands ----------------------------------------------------------------


def test_forget_of_nobody_exits_1_saying_so(synced: Path) -> None:
    result = run("forget", "--config", str(synced), "--source", "zendesk", "--requester", "999999")
    assert result.returncode == 1
    assert "nothing is stored for zendesk requester 999999: nothing deleted" in result.stderr
    assert "total" not in result.stdout


def test_fields_create_shows_the_plan_and_asks(sandbox: Sandbox, config_for: Any) -> None:
    config = config_for(sandbox, '[writeback]\nenabled = true\n\n[[writeback.mappings]]\nhelpdesk = "zendesk"\n'
                                 'object = "ticket"\nmetric = "first_response_minutes"\nfield = "frt_minutes"\n')
    refused = run("fields", "--create", "--source", "zendesk", "--config", str(config), stdin=subprocess.DEVNULL)
    assert refused.returncode == 2
    assert "will create:" in refused.stdout and "'frt_minutes'" in refused.stdout
    assert "pass --yes" in refused.stderr
    assert not [c for c in sandbox["zendesk"].calls() if c.method == "POST"], "nothing is created unasked"
    created = run("fields", "--create", "--yes", "--source", "zendesk", "--config", str(config),
                  stdin=subprocess.DEVNULL)
    assert created.returncode == 0, created.stdout + created.stderr
    assert [c for c in sandbox["zendesk"].calls() if c.method == "POST"]


# --- item 9: SIGTERM and Ctrl-C stop within 2 s ---------------------------------------------------


class Child:
    """A CLI subprocess whose stderr is read as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=clean_env(), cwd=ROOT)
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.err):
            assert time.monotonic() < deadline and self.proc.poll() is None, f"no {text!r} in {self.err}"
            time.sleep(0.05)

    def stop(self, sig: signal.Signals) -> tuple[int, float, str, str]:
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=10)
        seconds = time.monotonic() - started
        self._reader.join(5)
        assert self.proc.stdout is not None
        return code, seconds, self.proc.stdout.read(), "".join(self.err)


@pytest.fixture
def stoppable(tmp_path: Path) -> Iterator[Any]:
    children: list[Child] = []

    def start(*args: str) -> Child:
        children.append(Child(*args))
        return children[-1]

    yield start
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_during_a_retry_after_wait_ends_within_2s_and_names_the_unfinished(
        sig: signal.Signals, sandbox: Sandbox, config_for: Any, stoppable: Any) -> None:
    sandbox["zendesk"].fail(429, times=50, path="incremental/tickets",
                            headers={"Retry-After": "50"})
    config = config_for(sandbox)
    child = stoppable("sync", "--config", str(config))
    child.wait_for("(retry 1 in 50.0s)")
    code, seconds, out, err = child.stop(sig)
    assert seconds < 2.0, f"took {seconds:.1f}s"
    assert code == 1
    assert "sync interrupted: did not finish zendesk, freshdesk" in err
    assert "zendesk: stopped early (resumes next time)" in out  # what was read before the wait is stored
    assert "Traceback" not in err


def test_a_request_to_a_silent_server_is_interrupted_within_2s(sandbox: Sandbox, config_for: Any,
                                                               stoppable: Any) -> None:
    zendesk = sandbox["zendesk"]
    zendesk.slow(8.0, path="incremental/tickets")  # answers, but only after the stop is due
    child = stoppable("sync", "--config", str(config_for(sandbox)), "--source", "zendesk")
    deadline = time.monotonic() + 30
    while zendesk.faults:  # taken when the request arrives: the child now waits on the silent server
        assert time.monotonic() < deadline and child.proc.poll() is None
        time.sleep(0.05)
    code, seconds, _, err = child.stop(signal.SIGTERM)
    assert seconds < 2.0, f"took {seconds:.1f}s"
    assert code == 1
    assert "did not finish zendesk" in err
    assert "Traceback" not in err


# --- item 10: polish ---------------------------------------------------------------------------------


def test_version_and_a_help_text_for_every_option() -> None:
    version = run("--version")
    assert version.returncode == 0 and re.fullmatch(r"helpdesk-kpi \d+\.\d+\.\d+\S*\n", version.stdout)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, command_parser in sub.choices.items():
        for action in command_parser._actions:
            if action.help is None or not action.help.strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help: {missing}"


def test_top_level_help_lists_commands_by_task() -> None:
    text = run("--help").stdout
    headings = [f"  {task}:" for task, _ in TASKS]
    positions = [text.index(heading) for heading in headings]
    assert positions == sorted(positions)
    assert text.index("    check-config") < text.index("  sync:") < text.index("    kpis") < text.index("    forget")


def test_the_demo_hints_work_when_pasted(tmp_path: Path) -> None:
    demo = run("demo", "--dir", str(tmp_path / "demo-data"), "--tickets", "60", "--seed", "3", cwd=tmp_path,
               timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    hints = [line.strip() for line in demo.stdout.splitlines() if (line.startswith("  ") and "--config" in line)
             or " sandbox --seed" in line]
    sandbox_line = next(h for h in hints if " sandbox --seed 3 --tickets 60 --port " in h)
    kpis_line = next(h for h in hints if " kpis --by channel" in h)
    sync_line = next(h for h in hints if " sync --config" in h)
    assert Path(shlex.split(kpis_line)[0]).resolve().is_file() or shlex.split(kpis_line)[0] == "helpdesk-kpi"
    kpis = subprocess.run(kpis_line, shell=True, capture_output=True, text=True, cwd=tmp_path, env=clean_env(),
                          timeout=120)
    assert kpis.returncode == 0, kpis.stderr
    server = subprocess.Popen(shlex.split(sandbox_line), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path, env=clean_env())
    try:
        assert server.stdout is not None
        server.stdout.readline()  # the first URL: it listens
        sync = subprocess.run(sync_line, shell=True, capture_output=True, text=True, cwd=tmp_path, env=clean_env(),
                              timeout=120)
        assert sync.returncode == 0, sync.stdout + sync.stderr
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0


def test_check_config_online_tries_the_credentials(sandbox: Sandbox, config_for: Any) -> None:
    good = config_for(sandbox)
    bad = write_config(good.with_name("bad.toml"), good.read_text().replace("sandbox-zendesk-token", "wrong-token"))
    results = [subprocess.Popen([*CLI, "check-config", "--online", "--config", str(c)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=ROOT) for c in (good, bad)]
    (good_out, _), (bad_out, bad_err) = (child.communicate(timeout=60) for child in results)
    assert results[0].returncode == 0, good_out
    assert "zendesk" in good_out and "FAILED" not in good_out
    assert results[1].returncode == 1
    assert re.search(r"zendesk\s+FAILED", bad_out), bad_out
    assert "wrong-token" not in bad_out + bad_err
