"""Every ``--help`` of the command line, group or command, shows an example (README: "every command has --help with
an example"), and the examples name commands that exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from onceonly.cli import app


def walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, command) for the root, every group and every command, from the real command tree."""
    yield path, cmd
    if hasattr(cmd, "list_commands"):  # a group (typer vendors click: duck-typed)
        ctx = typer.Context(cmd)
        for name in cmd.list_commands(ctx):
            yield from walk(cmd.get_command(ctx, name), (*path, name))


TREE = list(walk(typer.main.get_command(app)))
GROUPS = [path for path, cmd in TREE if hasattr(cmd, "list_commands") and path]


def help_text(runner_app: Any, path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(runner_app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def example_of(text: str) -> list[str] | None:
    """The words after ``onceonly`` in the help's own ``Example:`` line (an env assignment may come first), or None.

    Only the description counts, not the panels below it: a group's command list must not lend it an example.
    """
    description = text.split("╭", 1)[0]
    match = re.search(r"Example:\s+(?:[A-Z_]+=\S+\s+)*onceonly\s+(.*)", description)
    return match.group(1).split() if match else None


def test_the_tree_has_the_groups_users_reach_for() -> None:
    assert {("stack",), ("topics",), ("source",), ("gateway",), ("tracker",), ("keys",)} <= set(GROUPS)
    assert len(TREE) > 40  # the walk reached the commands, not only the root


@pytest.mark.parametrize("path", [path for path, _ in TREE], ids=lambda p: " ".join(p) or "onceonly")
def test_every_help_shows_an_example_of_itself(path: tuple[str, ...]) -> None:
    example = example_of(help_text(app, path))
    assert example, f"`onceonly {' '.join(path)} --help` shows no example"
    if path:
        assert example[0] == path[0], f"the example of `{' '.join(path)}` runs another command: {example}"


def test_a_help_without_an_example_is_caught() -> None:
    bare = typer.Typer(help="A group with no example.", no_args_is_help=True)

    @bare.command()
    def go() -> None:
        """A command with no example either."""

    @bare.command()
    def other() -> None:
        """Example:  onceonly other --now"""

    assert example_of(help_text(bare, ())) is None
    assert example_of(help_text(bare, ("go",))) is None
    assert example_of(help_text(bare, ("other",))) == ["other", "--now"]
    assert example_of("Example:  ONCEONLY_X=1 onceonly registry serve") == ["registry", "serve"]
