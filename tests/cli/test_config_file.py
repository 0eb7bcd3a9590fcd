"""The TOML configuration file: ``otids config check`` and ``--config`` on ``otids read``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from otids.cli import main
from otids.config import SCHEMA, ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
PCAP = REPO / "pcaps" / "modbus-attack.pcap"
EXAMPLE = REPO / "otids.toml.example"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "otids.toml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_example_file_is_valid_and_shows_every_key() -> None:
    config = load_config(EXAMPLE)
    assert config.default_map and config.variables
    text = EXAMPLE.read_text()
    for section in SCHEMA.values():
        for key in section:  # set, or shown commented out (files that must exist)
            assert re.search(rf"^(# )?{key} = ", text, re.M), key


def test_keys_become_option_defaults(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    path = write(
        tmp_path,
        """
[capture]
interfaces = ["eth1", "eth2"]
workers = 2

[rules]
paths = ["rules"]
default_rules = false

[outputs]
json = "out/eve.json"

[outputs.syslog]
targets = ["tcp://siem:1514"]
queue_size = 50
drain_timeout = 2

[variables]
modbus_clients = ["10.0.0.5"]
"$dnp3_masters" = "10.0.0.6"
""",
    )
    config = load_config(path)
    assert config.default_map == {
        "interfaces": ["eth1", "eth2"],
        "workers": 2,
        "rule_dirs": [str(tmp_path / "rules")],  # relative to the file, not the cwd
        "no_default_rules": True,
        "json_out": str(tmp_path / "out" / "eve.json"),
        "syslog": ["tcp://siem:1514"],
        "syslog_queue": 50,
        "syslog_drain_timeout": 2,
    }
    assert config.variables == {"modbus_clients": ["10.0.0.5"], "dnp3_masters": ["10.0.0.6"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[rules]\ndefault_rule = true\n",
            ":2: unknown key 'default_rule' in [rules] (did you mean 'default_rules'?)",
        ),
        ("[capure]\n", ":1: unknown section [capure] (did you mean 'capture'?)"),
        ("[outputs]\n\nquiet = 'yes'\n", ":3: outputs.quiet must be true or false, got 'yes'"),
        (
            "[outputs.syslog]\ntargets = ['ftp://x']\n",
            ":2: outputs.syslog.targets: 'ftp://x': scheme must be",
        ),
        (
            "[outputs.syslog]\nformat = 'xml'\n",
            ":2: outputs.syslog.format: must be one of cef, leef, json",
        ),
        ("[outputs.syslog]\nqueue_size = 0\n", ":2: outputs.syslog.queue_size: must be at least 1"),
        ("[outputs.syslog]\nca_file = 'missing.pem'\n", "missing.pem does not exist"),
        ("[capture]\nworkers = 1.5\n", ":2: capture.workers must be an integer, got 1.5"),
        ("[capture]\ninterfaces = 'eth0'\n", ":2: capture.interfaces must be a list of strings"),
        ("[variables]\nx = { a = 1 }\n", ":2: variable 'x' must be a list of values"),
        ("rules = 1\n", ":1: [rules] must be a table"),
        ("[rules]\npaths = [\n", ":2: not valid TOML"),
    ],
)
def test_problems_name_file_line_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    (message,) = problems(path)
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "[rules]\nx = 1\n[outputs]\ny = 2\n[z]\n")
    assert len(problems(path)) == 3


def test_unreadable_file(tmp_path: Path) -> None:
    (message,) = problems(tmp_path / "absent.toml")
    assert "cannot read" in message


def test_config_check_command(tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(main, ["config", "check", str(EXAMPLE)])
    assert good.exit_code == 0 and "OK" in good.output
    bad = runner.invoke(main, ["config", "check", str(write(tmp_path, "[rulez]\n"))])
    assert bad.exit_code == 2
    assert "config error:" in bad.output and "did you mean 'rules'" in bad.output


def alerts_of(path: Path) -> list[dict[str, object]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r["event_type"] == "alert"]


def test_read_takes_options_from_the_file_and_flags_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[outputs]
json = "from-config.json"
quiet = true

[rules]
default_rules = false
""",
    )
    runner = CliRunner()
    run = runner.invoke(main, ["read", "--config", str(path), str(PCAP)])
    assert run.exit_code == 0, run.output
    assert (tmp_path / "from-config.json").exists()
    assert alerts_of(tmp_path / "from-config.json") == []  # no rules: the file said so
    override = tmp_path / "flag.json"
    run = runner.invoke(main, ["read", "--config", str(path), "--json", str(override), str(PCAP)])
    assert run.exit_code == 0, run.output
    assert override.exists()


def test_read_uses_the_file_variables(tmp_path: Path) -> None:
    # modbus-attack.pcap's client is 127.0.0.1: declaring another allowed client makes the
    # unauthorized-client rules fire.
    runner = CliRunner()
    plain, with_vars = tmp_path / "plain.json", tmp_path / "vars.json"
    assert runner.invoke(main, ["read", "-q", "--json", str(plain), str(PCAP)]).exit_code == 0
    path = write(tmp_path, '[variables]\nmodbus_clients = ["10.99.99.99"]\n')
    env = {"OTIDS_CONFIG": str(path)}
    run = runner.invoke(main, ["read", "-q", "--json", str(with_vars), str(PCAP)], env=env)
    assert run.exit_code == 0, run.output
    assert len(alerts_of(with_vars)) > len(alerts_of(plain))


def test_read_with_a_bad_file_exits_2(tmp_path: Path) -> None:
    run = CliRunner().invoke(main, ["read", "--config", str(write(tmp_path, "[x]\n")), str(PCAP)])
    assert run.exit_code == 2
    assert "unknown section [x]" in run.output
