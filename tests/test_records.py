"""The one record base (core/records.py): what a reader gets from a file on disk, good, old, newer or damaged."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from remote_agent.config.session_record import SessionRecord
from remote_agent.core.records import BadRecord, Record
from remote_agent.jupyter.record import ON_RESTART, JupyterRecord
from remote_agent.supervision import supervisor
from remote_agent.tunnel.keeper_config import KeeperConfig
from remote_agent.tunnel.state import TunnelState

# What the first release wrote for Jupyter (no version field) and for supervision (version 1).
JUPYTER_FIRST_RELEASE = {"pid": 41, "port": 8888, "root_dir": "/srv/nb", "provider": "ssh", "app": "lab"}
LAUNCH_V1: dict[str, Any] = {"command": "exec jupyter", "environment": {"A": "1"}, "start_dir": "/srv/nb"}
SUPERVISION_V1 = {"version": 1, "windows": {"jupyter": {"total": 2, "restarts": [1.5]}}, "jupyter_launch": LAUNCH_V1}


@pytest.mark.parametrize(
    ("cls", "data", "refusal"),
    [
        (TunnelState, {"version": 99, "status": "up"}, "version 99 is from a newer remote-agent"),
        (TunnelState, {"status": "up"}, "no version"),
        (TunnelState, {"version": "1"}, "no version"),
        (TunnelState, ["not", "an", "object"], "not a JSON object"),
        (JupyterRecord, {"version": 2, "port": 8888}, "the field 'pid' is missing"),
        (JupyterRecord, {"version": 2, "pid": "41", "port": 8888}, "the field 'pid' is not"),
        (JupyterRecord, {"version": 3, "pid": 41, "port": 8888}, "newer remote-agent"),
        (JupyterRecord, {"version": 0, "pid": 41, "port": 8888}, "version 0 is too old to read"),
    ],
)
def test_a_record_that_cannot_be_read_is_refused_with_what_is_wrong(
    cls: type[Record], data: object, refusal: str
) -> None:
    with pytest.raises(BadRecord, match=refusal):
        cls.from_dict(data)
    assert cls.parse(data) is None, "a reader treats it as missing"


@pytest.mark.parametrize(
    ("field", "value", "read_as"),
    [
        ("reopened", "three", 0),
        ("reopened", True, 0),
        ("agent_pid", 12.0, None),
        ("status", "sleeping", "starting"),
        ("reopen_reasons", {"exited": "2"}, {}),
        ("edge_refused", {"code": "ERR_NGROK_1"}, {"code": "ERR_NGROK_1"}),
    ],
)
def test_an_optional_field_of_the_wrong_type_reads_as_its_default(field: str, value: Any, read_as: Any) -> None:
    state = TunnelState.from_dict({"version": 1, "status": "up", "keeper_pid": 7, field: value})
    assert getattr(state, field) == read_as
    assert state.keeper_pid == 7, "the rest of the record is kept"


def test_jupyter_record_of_the_first_release_migrates_to_the_current_version() -> None:
    record = JupyterRecord.from_dict(JUPYTER_FIRST_RELEASE)
    assert (record.pid, record.port, record.app, record.provider) == (41, 8888, "lab", "ssh")
    assert record.version == JupyterRecord.VERSION == 2
    assert (record.proc_start, record.launch) == (None, None), "what the first release did not know stays unknown"
    assert record.to_dict()["version"] == 2, "written back as the current version"


def test_supervision_record_of_version_1_names_who_records_a_jupyter_restart() -> None:
    record = supervisor.Record.from_dict(SUPERVISION_V1)
    assert record.jupyter_launch == supervisor.Launch(**LAUNCH_V1, on_restart=ON_RESTART)
    assert record.windows["jupyter"] == supervisor.WindowHistory(total=2, restarts=[1.5])


def test_a_record_survives_its_own_round_trip_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "session.json"
    written = SessionRecord("/srv/.env", {"JUPYTER_PORT": "9000"}, {"JUPYTER_APP": "lab"}, "2026-12-04T18:00:00+00:00")
    written.save(path)
    assert SessionRecord.load(path) == written
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content", ["", "{", "[]", json.dumps({"version": 7})])
def test_a_missing_corrupt_or_newer_file_loads_as_no_record(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tunnel.json"
    assert TunnelState.load(path) is None
    path.write_text(content)
    assert TunnelState.load(path) is None


def test_keeper_config_of_the_current_release_loads_and_never_takes_a_secret_from_its_file(tmp_path: Path) -> None:
    path = tmp_path / "keeper.json"
    written_before_versions = {"port": 8888, "ngrok_path": None, "allow_emails": ["a@x.org"], "edge_secret": "planted"}
    path.write_text(json.dumps(written_before_versions))
    config = KeeperConfig.load(path)
    assert config is not None
    assert (config.port, config.allow_emails, config.version) == (8888, ("a@x.org",), 1)
    assert config.edge_secret is None, "the keeper makes its secret itself; a file cannot set it"
    stored = replace(config, edge_secret="made-by-the-keeper").to_dict()
    assert "edge_secret" not in stored
    assert stored["allow_emails"] == ["a@x.org"], "written as JSON holds it, so an unchanged config compares equal"
