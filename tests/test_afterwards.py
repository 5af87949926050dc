"""utils/afterwards.py: work left for after a command's answer runs then where a front end collects it,
at once everywhere else, and a discarded tree is gone at once and deleted with the work."""

from __future__ import annotations

import os
from pathlib import Path

from pydock.utils import afterwards


def test_work_runs_at_once_unless_collected_and_then_in_order_despite_failures():
    done: list[str] = []
    afterwards.later(lambda: done.append("now"))
    assert done == ["now"]

    def fails() -> None:
        raise OSError("after the answer")

    with afterwards.collecting() as pending:
        afterwards.later(lambda: done.append("first"))
        afterwards.later(fails)
        afterwards.later(lambda: done.append("last"))
    assert done == ["now"] and len(pending) == 3
    afterwards.run(pending)
    assert done == ["now", "first", "last"]
    afterwards.later(lambda: done.append("at once again"))
    assert done[-1] == "at once again"


def test_another_thread_runs_its_work_at_once_while_the_main_one_collects():
    import threading

    done: list[str] = []
    with afterwards.collecting() as pending:  # `pydock serve` as a command: its request threads run on
        worker = threading.Thread(target=lambda: afterwards.later(lambda: done.append("thread")))
        worker.start()
        worker.join()
        assert done == ["thread"] and pending == []


def test_a_process_forked_while_collecting_runs_its_own_work_at_once(tmp_path: Path):
    marker = tmp_path / "ran"
    with afterwards.collecting() as pending:
        pid = os.fork()
        if pid == 0:  # a monitor forked by a command: nobody would run its collected work
            try:
                afterwards.later(marker.touch)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    assert marker.exists() and pending == []


def _tree(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "sub" / "file").write_text("data")
    return path


def test_a_discarded_tree_is_gone_at_once_and_deleted_with_what_a_crash_left(tmp_path: Path):
    trash = tmp_path / "trash"
    _tree(trash / "left-by-a-crash.1234")
    tree = _tree(tmp_path / "doomed")
    with afterwards.collecting() as pending:
        afterwards.discard_tree(tree, trash)
        afterwards.discard_tree(tmp_path / "never-was", trash)  # nothing to do
    assert not tree.exists()
    assert len(os.listdir(trash)) == 2  # the tree waits there with the crash's leftover
    afterwards.run(pending)
    assert os.listdir(trash) == []


def test_a_tree_that_cannot_be_renamed_into_the_trash_is_deleted_at_once(tmp_path: Path):
    trash = tmp_path / "not-a-directory"
    trash.write_text("")
    tree = _tree(tmp_path / "doomed")
    with afterwards.collecting() as pending:
        afterwards.discard_tree(tree, trash)
    assert not tree.exists() and pending == []
