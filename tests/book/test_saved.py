"""Saved results documents: found from anywhere in the book, loaded once, and a missing one
named with the command that writes it (or None, said once, where the chapter allows it)."""

import json

import pytest

from perceptcoh.book.saved import load_saved, missing_sentence, repository_root


@pytest.fixture
def book(tmp_path):
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "there.json").write_text(json.dumps({"runs": [1, 2]}))
    (tmp_path / "book" / "experiments").mkdir(parents=True)
    return tmp_path


def test_the_root_is_found_from_a_chapter_folder(book, tmp_path_factory):
    assert repository_root(book / "book" / "experiments") == book
    with pytest.raises(FileNotFoundError, match="_toc.yml"):
        repository_root(tmp_path_factory.mktemp("elsewhere"))


def test_a_saved_document_is_loaded(book):
    assert load_saved("there.json", "cmd", root=book / "book") == {"runs": [1, 2]}


def test_a_missing_document_names_its_command(book, capsys):
    with pytest.raises(FileNotFoundError, match="python -m perceptcoh experiment x"):
        load_saved("missing.json", "python -m perceptcoh experiment x", root=book)
    assert load_saved("missing.json", "the command", missing_ok=True, root=book) is None
    assert capsys.readouterr().out.strip() == missing_sentence("missing.json", "the command")
    assert "results/missing.json" in missing_sentence("missing.json", "the command")
