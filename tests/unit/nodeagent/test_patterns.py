from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.patterns import expand_variables, has_wildcard, match_files


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    task = tmp_path / "task"
    wd = task / "wd"
    for name in ("a.txt", "b.txt", "c.log", ".hidden.txt", "sub/d.txt", "sub/deep/e.txt", ".dot/f.txt"):
        (wd / name).parent.mkdir(parents=True, exist_ok=True)
        (wd / name).write_text(name)
    (task / "stdout.txt").write_text("out")
    (task / "stderr.txt").write_text("err")
    return task


def relatives(pattern: str, task_dir: Path) -> list[str]:
    return [m.relative for m in match_files(pattern, task_dir / "wd", task_dir)]


def test_star_matches_one_level_without_dotfiles(task_dir: Path) -> None:
    assert relatives("*.txt", task_dir) == ["a.txt", "b.txt"]


def test_dotfiles_match_when_the_pattern_names_them(task_dir: Path) -> None:
    assert relatives(".*.txt", task_dir) == [".hidden.txt"]


def test_double_star_recurses_without_dot_directories(task_dir: Path) -> None:
    assert relatives("**/*.txt", task_dir) == ["a.txt", "b.txt", "sub/d.txt", "sub/deep/e.txt"]


def test_question_mark_and_brackets(task_dir: Path) -> None:
    assert relatives("?.txt", task_dir) == ["a.txt", "b.txt"]
    assert relatives("[ac].*", task_dir) == ["a.txt", "c.log"]
    assert relatives("[!a].txt", task_dir) == ["b.txt"]


def test_parent_pattern_reaches_the_task_directory(task_dir: Path) -> None:
    matches = match_files("../std*.txt", task_dir / "wd", task_dir)
    assert [m.relative for m in matches] == ["stderr.txt", "stdout.txt"]
    assert matches[0].path == task_dir / "stderr.txt"


def test_literal_pattern_names_one_file(task_dir: Path) -> None:
    matches = match_files("sub/d.txt", task_dir / "wd", task_dir)
    assert [(m.path, m.relative) for m in matches] == [(task_dir / "wd" / "sub" / "d.txt", "d.txt")]
    assert match_files("missing.txt", task_dir / "wd", task_dir) == []


def test_absolute_pattern(task_dir: Path) -> None:
    assert relatives(str(task_dir / "wd" / "sub" / "*.txt"), task_dir) == ["d.txt"]


def test_directories_are_not_matched(task_dir: Path) -> None:
    assert relatives("s*", task_dir) == []


def test_symlinked_directory_outside_is_not_followed(task_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("secret")
    (task_dir / "wd" / "escape").symlink_to(secret)
    assert relatives("**/*.txt", task_dir) == ["a.txt", "b.txt", "sub/d.txt", "sub/deep/e.txt"]
    assert relatives("escape/*.txt", task_dir) == []
    assert relatives("escape/key.txt", task_dir) == []


def test_symlinked_file_outside_is_skipped_inside_is_kept(task_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    (task_dir / "wd" / "out.txt").symlink_to(tmp_path / "secret.txt")
    (task_dir / "wd" / "in.txt").symlink_to(task_dir / "wd" / "a.txt")
    assert relatives("*.txt", task_dir) == ["a.txt", "b.txt", "in.txt"]


def test_variables_are_expanded_from_the_task_environment() -> None:
    env = {"AZ_BATCH_TASK_DIR": "/t", "NAME": "x"}
    assert expand_variables("$AZ_BATCH_TASK_DIR/${NAME}/%NAME%/$UNKNOWN", env) == "/t/x/x/$UNKNOWN"


def test_has_wildcard() -> None:
    assert has_wildcard("a/*.txt") and has_wildcard("a?") and has_wildcard("[ab]")
    assert not has_wildcard("plain/file.txt")
