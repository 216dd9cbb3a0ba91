"""What a node tells the user while it runs: on the canvas, in the console and in its report.

Every warning (and the few report lines a node shows) goes to three places: the console (logging), the node's
report (``report["warnings"]``, the STRING output) and the ComfyUI window, as the frontend's progress text under
the node (``PromptServer.send_progress_text``; the frontend keeps only the latest message of a node, so each
message carries all of the node's lines so far). The node id comes from the hidden input ``UNIQUE_ID`` that
every OmniSync node declares (``HIDDEN``); a node called outside ComfyUI's executor (a test, a script) has
none, and then only the console and the report get the lines.
"""

from __future__ import annotations

import logging
from typing import List, Optional

from comfy_api.latest import io

log = logging.getLogger("omnisync")

HIDDEN = (io.Hidden.unique_id,)  # in every node's schema (a fresh list each): the executor hands it its node id
WARNING_MARK = "⚠ "  # how a warning line reads on the canvas, beside the node's report lines


class Feedback:
    """The lines one node run shows. ``warn`` is the core's ``on_warning``; ``info`` a report line.

    node: the running node class (ComfyUI's clone, whose ``hidden.unique_id`` names the node on the canvas);
    title: the node's display name, which prefixes the console lines;
    report: the node's report dict, whose ``"warnings"`` list each warning joins; None when the core already
    records the warnings in a report of its own.
    """

    def __init__(self, node: type, title: str, report: Optional[dict] = None):
        hidden = getattr(node, "hidden", None)
        self.node_id = getattr(hidden, "unique_id", None) if hidden is not None else None
        self.title = title
        self.report = report
        self.lines: List[str] = []

    def warn(self, message: str) -> None:
        if self.report is not None:
            self.report.setdefault("warnings", []).append(message)
        log.warning("%s: %s", self.title, message)
        self._show(WARNING_MARK + message)

    def info(self, message: str) -> None:
        log.info("%s: %s", self.title, message)
        self._show(message)

    def _show(self, line: str) -> None:
        self.lines.append(line)
        if self.node_id is None:
            return
        from server import PromptServer

        if PromptServer.instance is not None:
            PromptServer.instance.send_progress_text("\n".join(self.lines), self.node_id)
