"""The command line forgives mistakes and says what it does: close-match suggestions, help for
every option, distinct exit codes, one clear line when no coordinator answers, completion
scripts, certificates for a coordinator off loopback, and JSON logs."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from tokenweave._logs import JsonFormatter
from tokenweave.cli import _data_cmd, main
from tokenweave.cli._app import exit_status, explain
from tokenweave.cli._ids import resolve, short
from tokenweave.cli._parser import build_parser
from tokenweave.client._data import PutResult
from tokenweave.errors import (
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    JobFailedError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
    error_for_status,
)


def _parsers(parser: argparse.ArgumentParser, path: str = "tokenweave"):  # type: ignore[no-untyped-def]
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_of_every_command_says_what_it_does() -> None:
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not (action.help or "").strip()
    ]
    assert missing == []


def test_defaults_are_shown_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["submit", "embed", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "passages --query shows, each in full (default: 3)" in text
    assert "embedded in the same job" in text  # --query says what it costs


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["sbumit"], "did you mean 'submit'?"),
        (["data", "stauts", "x"], "did you mean 'status'?"),
        (["models", "prepare", "--precision", "fp61"], "did you mean 'fp16'?"),
    ],
)
def test_a_misspelled_command_or_choice_gets_the_closest(
    argv: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert suggestion in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidArgumentError("x"), 2),
        (UnavailableError("x"), 3),
        (error_for_status("DEADLINE_EXCEEDED", "x"), 3),
        (NotFoundError("x"), 4),
        (PermissionDeniedError("x"), 4),
        (FailedPreconditionError("x"), 4),
        (JobFailedError("job j FAILED: boom"), 5),
        (InternalError("x"), 1),
    ],
)
def test_each_kind_of_failure_has_its_exit_status(error: Exception, status: int) -> None:
    assert exit_status(error) == status  # type: ignore[arg-type]


def test_nothing_answering_is_one_line_that_says_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    raw = UnavailableError("failed to connect to all addresses; last error: UNKNOWN: ipv4:...")
    line = explain(raw, "127.0.0.1:9")
    assert line.startswith("nothing answers at 127.0.0.1:9: is a coordinator running there?")
    assert "tokenweave coordinator" in line
    # For real: a port nothing listens on.
    assert main(["jobs", "--coordinator", "127.0.0.1:9"]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "nothing answers at 127.0.0.1:9" in err


def test_an_address_is_parsed_strictly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "--coordinator", "http://127.0.0.1:50051"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "is a URL; give HOST:PORT instead, e.g. 127.0.0.1:50051" in err


def test_a_misspelled_config_table_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tw.toml"
    config.write_text('[clinet]\ncoordinator = "127.0.0.1:9"\n')
    assert main(["--config", str(config), "jobs"]) == 2
    assert "did you mean 'client'?" in capsys.readouterr().err


@pytest.mark.parametrize("shell", ["bash", "zsh", "tcsh"])
def test_completion_scripts_know_the_commands(
    shell: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for word in ("submit", "testnet") + (("--coordinator",) if shell != "tcsh" else ()):
        assert word in script
    if shell == "bash" and shutil.which("bash"):
        path = tmp_path / "tokenweave.bash"
        path.write_text(script)
        subprocess.run(["bash", "-n", str(path)], check=True)  # it parses


def test_tls_init_makes_a_ca_and_a_certificate_for_the_names(tmp_path: Path) -> None:
    from cryptography import x509

    assert main(["tls", "init", "--dir", str(tmp_path), "--host", "coordinator"]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "coordinator.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "coordinator" in names.get_values_for_type(x509.DNSName)
    assert (tmp_path / "coordinator.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ca.pem").exists()


def test_json_logs_are_one_object_a_line_with_the_ids() -> None:
    record = logging.LogRecord(
        "tokenweave.x", logging.WARNING, __file__, 1, "shard %s late", ("s1",), None
    )
    record.job_id, record.shard_id = "j1", "s1"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "shard s1 late"
    assert (line["level"], line["job_id"], line["shard_id"]) == ("WARNING", "j1", "s1")
    assert "node_id" not in line


class _Stored:
    """A client whose upload landed on fewer nodes than the coordinator keeps copies on."""

    def put(self, path: Path, profile: str, progress: object) -> PutResult:
        return PutResult("bafyroot", blocks=2, bytes=10, min_replicas=2, target_replicas=3)


def test_an_under_replicated_upload_is_announced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("hello")
    assert _data_cmd.put(_Stored(), source, "unixfs-v1-2025", as_json=False) == 0  # type: ignore[arg-type]
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "2 of 3 replicas at least" in err
    assert "under-replicated: some blocks have 2 copies of the 3 the coordinator keeps" in err
    assert captured.out.strip() == "bafyroot"


def test_a_prefix_resolves_to_the_one_id_it_starts() -> None:
    ids = ["60ff77da11", "60ff0000aa", "71aa"]
    assert resolve("71", ids, "job id") == "71aa"
    assert resolve("60FF77", ids, "job id") == "60ff77da11"
    with pytest.raises(InvalidArgumentError, match=r"ambiguous: it starts 2 of them"):
        resolve("60ff", ids, "job id")
    with pytest.raises(NotFoundError, match="no job id starts with 'zz'"):
        resolve("zz", ids, "job id")
    assert short("60ff77da11aa22", "job", wide=False) == "60ff77da…"
    assert short("60ff77da11aa22", "job", wide=True) == "60ff77da11aa22"
