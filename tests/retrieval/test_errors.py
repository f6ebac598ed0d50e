"""The one error family: every error evidex raises derives from EvidexError, and the command
line turns those (and only those) into one line and an exit code."""

from __future__ import annotations

import ast
import builtins
import importlib
from pathlib import Path

import pytest
import typer

from retrieval.errors import EvidexError, InputError, UsageError

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "retrieval", "planner", "answer", "ui", "rl_training")
# Raising these bare names is allowed: they mark a programming error, not a user's input.
ALLOWED_BARE = {"NotImplementedError", "AssertionError", "StopIteration", "KeyboardInterrupt"}


def _sources() -> list[Path]:
    return [f for pkg in PACKAGES for f in (REPO / pkg).rglob("*.py")]


def _module(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_every_error_class_derives_from_evidex_error() -> None:
    classes = []
    for f in _sources():
        tree = ast.parse(f.read_text("utf-8"))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name.endswith(
                ("Error", "Exception", "Unavailable")
            ):
                classes.append((_module(f), node.name))
    assert len(classes) >= 12, classes  # the scan found the error classes
    not_ours = []
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        if not issubclass(cls, EvidexError):
            not_ours.append(f"{module}.{name}")
    assert not not_ours, f"errors outside the family: {not_ours}"


def _bare_raises(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            name = func.id if isinstance(func, ast.Name) else None
            builtin = getattr(builtins, name, None) if name else None
            if (
                isinstance(builtin, type)
                and issubclass(builtin, BaseException)
                and name not in ALLOWED_BARE
            ):
                found.append((node.lineno, str(name)))
    return found


def test_the_library_raises_no_bare_builtin_exception() -> None:
    offenders = [
        f"{f.relative_to(REPO)}:{line}: raise {name}(...)"
        for f in _sources()
        for line, name in _bare_raises(ast.parse(f.read_text("utf-8")))
    ]
    assert not offenders, "\n".join(offenders)


def test_the_scan_sees_a_bare_raise() -> None:
    assert _bare_raises(ast.parse("raise ValueError('x')")) == [(1, "ValueError")]
    assert _bare_raises(ast.parse("raise InputError('x')")) == []


def test_kinds_keep_their_standard_base() -> None:
    from answer.patient import PatientError
    from planner.chat import ChatError
    from retrieval.settings import SettingsError
    from retrieval.stores.base import StoreError

    assert issubclass(SettingsError, ValueError) and issubclass(PatientError, ValueError)
    assert issubclass(StoreError, RuntimeError) and issubclass(ChatError, RuntimeError)
    assert PatientError.exit_code == 2 and StoreError.exit_code == 1


def test_the_command_line_catches_the_family_alone(capsys: pytest.CaptureFixture[str]) -> None:
    from ui.cli.app import guarded

    @guarded
    def bad_input() -> None:
        raise InputError("corpus.jsonl:3: not JSON [1]")

    @guarded
    def bad_usage() -> None:
        raise UsageError("--mode must be dense, sparse or hybrid")

    @guarded
    def bug() -> None:
        raise KeyError("a bug")

    with pytest.raises(typer.Exit) as exit1:
        bad_input()
    assert exit1.value.exit_code == 1
    assert "error: corpus.jsonl:3: not JSON [1]" in capsys.readouterr().err  # markup escaped
    with pytest.raises(typer.Exit) as exit2:
        bad_usage()
    assert exit2.value.exit_code == 2
    with pytest.raises(KeyError):  # a bug keeps its traceback
        bug()
