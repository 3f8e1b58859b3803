"""The command-line surface: help texts, usage errors, exit codes, start-up imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from toile import __version__
from toile.cli import main

COMMANDS = [
    [],
    ["export"],
    ["export", "frames"],
    ["export", "test-frames"],
    ["export", "test-recording"],
    ["info"],
    ["verify"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "toile")
def test_every_command_has_help_with_examples(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    if command and command[-1] not in ("export",):
        assert "Examples:" in result.output


def test_export_frames_help_lists_every_contract_option():
    result = CliRunner().invoke(main, ["export", "frames", "--help"])
    for option in [
        "--stem",
        "--shard-size",
        "--pds",
        "--uint8",
        "--compressed",
        "--verbose",
        "--format",
        "--channel",
        "--workers",
        "--on-error",
        "--overwrite",
        "--resume",
    ]:
        assert option in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["export", "frames"],
        ["export", "frames", "only-one-arg"],
        ["export", "frames", "in", "out", "--no-such-option"],
        ["export", "frames", "in", "out", "--shard-size", "abc"],
        ["export", "frames", "in", "out", "--shard-size", "0"],
        ["export", "frames", "in", "out", "--format", "parquet"],
        ["export", "frames", "in", "out", "--on-error", "ignore"],
        ["export", "frames", "in", "out", "--workers", "0"],
        ["export", "test-frames"],
        ["export", "test-frames", "out", "--frames", "-3"],
        ["export", "nothing"],
    ],
)
def test_bad_usage_exits_with_code_2(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output


def test_pds_with_other_shard_size_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(
        main,
        ["export", "test-frames", str(tmp_path / "o"), "--pds", "--shard-size", "1000000"],
    )
    assert result.exit_code == 2
    assert "--pds" in result.output
    assert not (tmp_path / "o").exists()


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys\n"
        "from toile.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('atdata', 'webdataset', 'skimage', 'numpy', 'tifffile') if m in sys.modules]\n"
        "print('HEAVY:' + ','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "HEAVY:"


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "toile.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert __version__ in out.stdout


_PROBE = """
import sys

import toile.export


def interrupted(*args, **kwargs):
    # a Ctrl-C that lands in string-compiled code, as it does in a dataclass being
    # created by an import
    exec("raise KeyboardInterrupt")


toile.export.export_frames = interrupted
sys.argv = ["toile", "export", "frames", sys.argv[1], sys.argv[2]]
from toile.cli import main

main()
"""


def test_an_interrupt_in_string_compiled_code_exits_130_under_python_m(tmp_path):
    """CPython 3.12 marks such an interrupt unhandled even once caught and, under
    ``python -m``, would end the process by SIGINT instead of with 130."""
    import subprocess
    import sys

    (tmp_path / "interrupt_probe.py").write_text(_PROBE)
    source = tmp_path / "in.tif"
    source.write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "interrupt_probe", str(source), str(tmp_path / "out")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 130, (result.returncode, result.stderr)
    assert result.stderr.strip() == "toile: interrupted", result.stderr
