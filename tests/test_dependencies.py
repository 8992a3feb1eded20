"""The dependency floors (pyproject.toml) and lenet's own use of jsonargparse: no call that it deprecates."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from lenet_cli.cli.main import main
from tests.helpers import QUICK, ROOT

PACKAGE = Path(main.__code__.co_filename).parents[1]  # src/lenet_cli


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {Requirement(line).name: Requirement(line) for line in project["dependencies"]}


@pytest.mark.parametrize(
    ("name", "refused", "admitted"),
    [
        # CVE-2026-24747: the weights_only unpickler before 2.10.
        pytest.param("torch", ["2.4.0", "2.9.1"], ["2.10.0", "2.14.1"], id="torch"),
        # GHSA-w37p-236h-pfx3: 2.6.2 and 2.6.3 were malicious releases.
        pytest.param("lightning", ["2.4.0", "2.6.2", "2.6.3", "3.0.0"], ["2.5.0", "2.6.1", "2.6.6"], id="lightning"),
        # 4.49 has parser.save(skip_unset=...); 5.0 removes what Lightning 2.6 calls.
        pytest.param("jsonargparse", ["4.35.0", "4.48.0", "5.0.0"], ["4.49.0", "4.53.0"], id="jsonargparse"),
    ],
)
def test_dependency_floors_refuse_the_bad_releases(name: str, refused: list[str], admitted: list[str]) -> None:
    specifier = requirements()[name].specifier
    assert [version for version in refused if specifier.contains(Version(version))] == []
    assert [version for version in admitted if not specifier.contains(Version(version))] == []


def test_python_floor_is_3_11() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_lenet_calls_nothing_that_jsonargparse_deprecates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit (which saves its config), a test and --print_config; a warning that jsonargparse attributes to a
    file of lenet_cli fails (Lightning's own deprecated calls are Lightning's to fix)."""
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", *QUICK, "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2"])
        main(["test", *QUICK, "--ckpt_path", "pretrained", "--trainer.limit_test_batches=2"])
        with pytest.raises(SystemExit):
            main(["fit", *QUICK, "--print_config"])
    ours = [
        f"{Path(warning.filename).name}:{warning.lineno}: {warning.message}"
        for warning in caught
        if type(warning.message).__module__.startswith("jsonargparse")
        and Path(warning.filename).resolve().is_relative_to(PACKAGE.resolve())
    ]
    assert ours == []
