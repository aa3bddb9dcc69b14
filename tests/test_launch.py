"""Launching the book: the repository is named once (_config.yml), and the launch buttons
and every notebook's first cell use it."""

from __future__ import annotations

import runpy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = runpy.run_path(str(ROOT / "scripts" / "colab_cell.py"))


def test_every_notebook_opens_with_the_colab_cell_of_the_configured_repository():
    assert SCRIPT["main"](["--check"]) == 0
    url, branch = SCRIPT["repository"]()
    for path in SCRIPT["notebooks"]():
        source = SCRIPT["first_code_cell"](__import__("nbformat").read(path, as_version=4)).source
        assert f'"{url}"' in source and f'"{branch}"' in source
        folder = path.parent.relative_to(ROOT).as_posix()
        assert f'os.chdir(os.path.join(clone, "{folder}"))' in source


def test_the_launch_buttons_are_configured_from_the_same_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["html"]["use_repository_button"] is True
    # No other copy of the repository's address in the book's sources.
    url = config["repository"]["url"]
    for path in [*(ROOT / "book").rglob("*.ipynb"), *(ROOT / "book").rglob("*.md")]:
        text = path.read_text()
        outside_first_cell = text.count(url) - (1 if path.suffix == ".ipynb" else 0)
        assert outside_first_cell == 0, path
