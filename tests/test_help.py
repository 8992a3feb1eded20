"""`lenet --help` says what lenet is; a subcommand's help puts lenet's options first, in lenet's words."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lenet_cli._lightning import subcommand_parsers
from lenet_cli.cli.lightning_cli import LenetCLI
from lenet_cli.cli.main import main as run_cli
from tests.helpers import ROOT


def help_text(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(args)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def option_help(text: str, option: str) -> str:
    """The help paragraph of ``option`` (its line and the indented lines under it)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(option + " "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" " * 24)), len(lines))
    return " ".join(line.strip() for line in lines[start:end])


def test_top_level_help_says_what_lenet_is(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", [str(ROOT / "src" / "lenet_cli" / "__main__.py")])
    text = help_text(["--help"], capsys)
    assert text.startswith("usage: lenet [-c CONFIG] {fit,validate,test,predict,export,serve,runs}")
    flat = " ".join(text.split())
    assert "LeNet-5 digit classifier" in flat and "Lightning Trainer command line tool" not in text
    # `lenet read` comes first, as the way to read a digit
    assert flat.index("`lenet read photo.jpg`") < flat.index("LeNet-5 digit classifier") < flat.index("options:")
    for subcommand in ("fit", "validate", "test", "predict", "runs"):
        assert f"\n    {subcommand} " in text


@pytest.mark.slow
@pytest.mark.processes
def test_python_dash_m_shows_lenet(tmp_path: object) -> None:
    # argparse names the program after sys.argv[0], which is __main__.py under `python -m`.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "lenet_cli", "--help"], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: lenet ") and "__main__" not in result.stdout


def test_subcommand_help_puts_lenets_options_first(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(["fit", "--help"], capsys)
    assert text.startswith("usage: lenet [options] fit [-h] [-c CONFIG]") and "\n\n" in text[:300]  # one usage line
    order = [
        "--ckpt_path",
        "--model.lr",
        "--data.batch_size",
        "--checkpoint.monitor",
        "--prediction_writer.grid_size",
        "--trainer.accelerator",
        "--trainer.max_epochs",
        "--optimizer",
    ]
    positions = [text.index(f"  {option} ") for option in order]
    assert positions == sorted(positions), dict(zip(order, positions, strict=True))
    assert "--model.*: the network:" in text and "--trainer.*: Lightning's Trainer, with lenet's defaults:" in text


@pytest.mark.parametrize(
    ("option", "says", "not_says"),
    [
        pytest.param("--trainer.max_epochs", "lenet's default: 10", "Disabled by default", id="max_epochs"),
        pytest.param("--trainer.logger", "runs/lenet/version_N/", "uses the default", id="logger"),
        pytest.param("--weights_only", "Always true", "weights_only=False", id="weights_only"),
        pytest.param("--ckpt_path", "lowest val/loss", "registry", id="ckpt_path"),
        pytest.param("--seed_everything", "same seed repeats a run", "random seed", id="seed"),
        pytest.param("--checkpoint.monitor", "lenet's default: val/loss", "By default it is", id="monitor"),
        pytest.param("--checkpoint.filename", "lenet's default: best", "'{epoch}-{step}'", id="filename"),
        pytest.param("--checkpoint.dirpath", "checkpoints/ in the run folder", "only keep", id="dirpath"),
    ],
)
def test_inherited_texts_say_what_lenet_does(
    option: str, says: str, not_says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    paragraph = option_help(help_text(["test" if option == "--ckpt_path" else "fit", "--help"], capsys), option)
    assert says in paragraph and not_says not in paragraph, paragraph


def test_only_the_named_subcommand_gets_a_parser() -> None:
    # Each subcommand's full parser costs ~70 ms; `lenet --help` lists them from parsers without options.
    built: dict[str, list[tuple[str, bool]]] = {}
    original = LenetCLI.setup_parser

    def record(self: LenetCLI, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        built[" ".join(self.command_words or [])] = [
            (name, "--trainer.max_epochs" in parser._option_string_actions)
            for name, parser in subcommand_parsers(self).items()
        ]
        raise SystemExit(0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LenetCLI, "setup_parser", record)
        for args in (["test", "--ckpt_path", "x.ckpt"], ["-c", "x.yaml", "predict"], ["--help"]):
            with pytest.raises(SystemExit):
                LenetCLI(args=args)
    assert built["test --ckpt_path x.ckpt"] == [("test", True)]
    assert built["-c x.yaml predict"] == [("predict", True)]
    assert built["--help"] == [(name, False) for name in LenetCLI.subcommands()]
