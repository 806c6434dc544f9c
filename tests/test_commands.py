"""The one command line (``latentsync <command>`` / ``python -m latentsync_demo <command>``) and its old forms."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from latentsync_demo.commands import COMMANDS, main, resolve_command

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "cv2", "diffusers", "transformers", "gradio", "huggingface_hub")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_help_lists_every_command_without_importing_heavy_libraries():
    code = ("import sys\nfrom latentsync_demo.commands import main\nstatus = main(['--help'])\n"
            f"print('loaded:', [m for m in {HEAVY!r} if m in sys.modules], 'status:', status)")
    result = _run("-c", code)
    assert result.returncode == 0, result.stderr
    assert "loaded: [] status: 0" in result.stdout
    for name in COMMANDS:
        assert f"\n  {name} " in result.stdout


def test_python_m_help_exits_0_and_no_arguments_exits_2():
    shown = _run("-m", "latentsync_demo", "--help")
    assert shown.returncode == 0 and "download-voice" in shown.stdout
    bare = _run("-m", "latentsync_demo")
    assert bare.returncode == 2 and "commands:" in bare.stderr


def test_every_command_module_has_a_main_taking_argv():
    for name, (module, _) in COMMANDS.items():
        source = (REPO / f"{module.replace('.', '/')}.py").read_text()  # read, not imported: that takes minutes
        mains = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "main"]
        assert mains and [a.arg for a in mains[0].args.args] == ["argv"], f"{name}: {module}.main(argv) missing"


def test_old_forms_go_to_run_and_subcommands_to_their_module():
    old = ["--video", "in.mp4", "--audio", "speech.wav", "--out", "out.mp4"]
    assert resolve_command(old) == ("latentsync_demo.cli", old)
    assert resolve_command(["run", *old]) == ("latentsync_demo.cli", old)
    assert resolve_command(["batch", "jobs.csv", "--out", "results"]) == ("latentsync_demo.batch", ["jobs.csv", "--out", "results"])
    assert resolve_command(["download", "--preset", "latentsync-1.6"])[0] == "latentsync_demo.download"
    assert resolve_command([]) is None and resolve_command(["-h"]) is None
    with pytest.raises(KeyError):
        resolve_command(["dowload"])


def test_old_video_form_still_parses_as_run():
    from latentsync_demo.cli import build_parser

    module, args = resolve_command(["--video", "in.mp4", "--audio", "speech.wav", "--out", "out.mp4", "--steps", "3"])
    parsed = build_parser().parse_args(args)
    assert module == "latentsync_demo.cli"
    assert (parsed.video, parsed.audio, parsed.out, parsed.steps) == ("in.mp4", "speech.wav", "out.mp4", 3)


def test_unknown_command_names_the_choices(capsys):
    assert main(["dowload"]) == 2
    error = capsys.readouterr().err
    assert "unknown command 'dowload'" in error and "download" in error


def test_a_command_and_its_old_module_entry_point_run_the_same_main():
    via_command = _run("-m", "latentsync_demo", "demo-media", "--help")
    via_module = _run("-m", "latentsync_demo.testing.media_demo", "--help")
    assert via_module.returncode == 0 and via_command.returncode == 0
    assert "demo clip" in via_module.stdout and via_command.stdout == via_module.stdout


def test_commands_write_their_files(tmp_path):
    assert main(["demo-media", str(tmp_path)]) == 0  # a main that returns None counts as success
    assert (tmp_path / "demo.mp4").stat().st_size > 0 and (tmp_path / "speech.wav").stat().st_size > 0
