"""A real terminal for the interactive tests: a private tmux server whose pane runs pydock; keys are sent,
the screen is read, the window is resized. Every wait is for something on the screen (no fixed sleeps).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

TMUX = shutil.which("tmux")
NO_TMUX = "tmux is not installed (apt-get install tmux; hack/make.sh installs it)"
#: generous: the machine is shared and UML is ~5x slower
WAIT = 90.0


#: `pydock` as users run it: the entry point, handing each command to the CLI command server, so the
#: interactive tests (terminals, signals, ^C, resizes, detach keys) run through its client and workers
ENTRY = str(Path(sys.executable).with_name("pydock"))


def pydock_argv(root: Path, *args: str) -> list[str]:
    return [ENTRY, "-g", str(root), "-s", "overlay", "-b", "none", *args]


def pydock(root: Path, *args: str, input: bytes | None = None, timeout: float = 120,
           env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The `pydock` CLI on `root`, without a terminal, its output captured (`env_extra` added to its
    environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDOCK_")} | (env_extra or {})
    return subprocess.run(pydock_argv(root, *args), input=input, capture_output=True, timeout=timeout, env=env)


class Tmux:
    """One tmux server (its own socket) with one window of `cols` x `rows`."""

    def __init__(self, cols: int = 80, rows: int = 24) -> None:
        assert TMUX is not None
        self.socket = f"pydock-test-{uuid.uuid4().hex[:8]}"
        self.cols, self.rows = cols, rows
        self.started = False

    def tmux(self, *args: str) -> str:
        proc = subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args], capture_output=True,
                              text=True, timeout=30)
        if proc.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def start(self, argv: list[str], *, after: str = "") -> None:
        """Run `argv` in the pane; its exit status is printed as `EXIT=<n>`, then `after` (a shell
        snippet run on the same terminal), then the pane waits to be read."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in os.environ.items()
                       if k in ("PATH", "PYTHONPATH", "VIRTUAL_ENV"))
        script = f"env {env} {shlex.join(argv)}; echo EXIT=$?; {after} exec sleep 3600"
        self.tmux("new-session", "-d", "-s", "main", "-x", str(self.cols), "-y", str(self.rows),
                  "/bin/sh", "-c", script)
        self.started = True

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "main")

    def wait_for(self, text: str, *, count: int = 1, timeout: float = WAIT) -> str:
        """Until `text` is on the screen `count` times; the screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} (x{count}) never appeared; the screen:\n{screen}")
            time.sleep(0.1)

    def retype_until(self, line: str, text: str, *, timeout: float = WAIT) -> None:
        """Type `line` again every few seconds until `text` is on the screen: for an effect that reaches the
        pane's program asynchronously (a resize's SIGWINCH may come after keys typed right after it)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.screen().count(text)
            self.type(line)
            try:
                self.wait_for(text, count=seen + 1, timeout=min(5.0, max(0.1, deadline - time.monotonic())))
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def send(self, *keys: str) -> None:
        """tmux key names (`Enter`, `C-p`) or literal text."""
        self.tmux("send-keys", "-t", "main", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "main", "-l", text)
        self.send("Enter")

    def resize(self, cols: int, rows: int) -> None:
        self.tmux("resize-window", "-t", "main", "-x", str(cols), "-y", str(rows))

    def exit_status(self, timeout: float = WAIT) -> int:
        """The status pydock exited with (printed by the pane's shell)."""
        screen = self.wait_for("EXIT=", timeout=timeout)
        line = next(l for l in screen.splitlines() if "EXIT=" in l)
        return int(line.split("EXIT=", 1)[1].split()[0])

    def close(self) -> None:
        if self.started:
            subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=30)
