"""farserver.config: `farserver [-p 11311] [-l 127.0.0.1] [-m MB] [--secret-file F] [-v]`."""

from __future__ import annotations

import pytest

from farserver.config import Config, parse_args


def test_defaults():
    config = parse_args([])
    assert config == Config("127.0.0.1", 11311, 1024, None, False)
    assert config.limit_bytes == 1024 * 1024 * 1024


def test_flags(tmp_path):
    secret = tmp_path / "s"
    secret.write_bytes(b"top secret\r\n")
    config = parse_args(["-p", "0", "-l", "0.0.0.0", "-m", "3", "--secret-file", str(secret), "-v"])
    assert (config.port, config.host, config.limit_bytes) == (0, "0.0.0.0", 3 << 20)
    assert config.secret == b"top secret" and config.verbose


@pytest.mark.parametrize("argv", [["-m", "0"], ["-p", "70000"], ["--secret-file", "/nonexistent"]])
def test_bad_command_lines_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


def test_empty_secret_file_is_refused(tmp_path):
    secret = tmp_path / "s"
    secret.write_bytes(b"\n")
    with pytest.raises(SystemExit):
        parse_args(["--secret-file", str(secret)])
