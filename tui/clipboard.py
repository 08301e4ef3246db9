"""Copying text where the user can paste it, locally and over SSH.

The text always goes to the terminal as an OSC 52 escape (``App.copy_to_clipboard``): the
terminal puts it on the clipboard of the machine the user sits at, which is the only way
that works over SSH. When the app is not remote, a local clipboard program (``pbcopy``,
``wl-copy``, ``xclip``, ``xsel``) gets it too, so terminals without OSC 52 (macOS Terminal)
still work. :func:`plan_copy` decides; :func:`copy_message` says what happened.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from textual.notifications import SeverityLevel


@dataclass(frozen=True)
class CopyPlan:
    """How to copy: the local program to run (if any) and what the user should know."""

    tool: list[str] | None
    remote: bool
    apple_terminal: bool
    tmux: bool
    web: bool = False


def is_remote(env: Mapping[str, str]) -> bool:
    """Whether the app runs in an SSH session."""
    return any(env.get(name) for name in ("SSH_TTY", "SSH_CONNECTION", "SSH_CLIENT"))


def local_tool(env: Mapping[str, str], platform: str,
               which: Callable[[str], str | None]) -> list[str] | None:
    """The command of a local clipboard program that reads the text on its input, if any."""
    candidates: list[list[str]] = []
    if platform == "darwin":
        candidates.append(["pbcopy"])
    else:
        if env.get("WAYLAND_DISPLAY"):
            candidates.append(["wl-copy"])
        if env.get("DISPLAY"):
            candidates += [["xclip", "-selection", "clipboard"], ["xsel", "--clipboard",
                                                                  "--input"]]
    for command in candidates:
        path = which(command[0])
        if path:
            return [path, *command[1:]]
    return None


def plan_copy(env: Mapping[str, str], platform: str, which: Callable[[str], str | None],
              web: bool = False) -> CopyPlan:
    """What copying should do in this environment (``web``: the app is served to a browser
    by ``textual serve``, so this machine's clipboard is not the reader's)."""
    remote = web or is_remote(env)
    return CopyPlan(tool=None if remote else local_tool(env, platform, which), remote=remote,
                    apple_terminal=not web and env.get("TERM_PROGRAM") == "Apple_Terminal",
                    tmux=not web and bool(env.get("TMUX")), web=web)


def run_tool(command: list[str], text: str) -> bool:
    """Give ``text`` to a clipboard program; whether it took it."""
    try:
        result = subprocess.run(command, input=text.encode("utf-8"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def copy_message(plan: CopyPlan, tool_worked: bool, what: str,
                 export_key: str) -> tuple[str, SeverityLevel]:
    """What to tell the user after copying ``what`` (e.g. "Story")."""
    if tool_worked:
        return f"{what} copied to the clipboard.", "information"
    if plan.apple_terminal:
        where = " over SSH" if plan.remote else ""
        return (f"macOS Terminal cannot receive copied text{where}: it does not support the "
                f"clipboard escape (OSC 52). Use iTerm2, kitty, WezTerm or Ghostty, or export "
                f"the story with {export_key}.", "warning")
    if plan.web:
        return (f"{what} sent to the browser's clipboard (if it allows it; else export with "
                f"{export_key}).", "information")
    tmux = " In tmux, add `set -g set-clipboard on` to ~/.tmux.conf." if plan.tmux else ""
    if plan.remote:
        return (f"{what} sent to your terminal's clipboard over SSH (OSC 52).{tmux} If nothing "
                f"pastes, your terminal does not allow it: export with {export_key}.",
                "information")
    return (f"{what} sent to the terminal's clipboard (OSC 52); no local clipboard program "
            f"(pbcopy, wl-copy, xclip, xsel) was found.{tmux} If nothing pastes, export with "
            f"{export_key}.", "information")
