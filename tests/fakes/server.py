"""Fake of ComfyUI's ``server``: the PromptServer's progress-text channel, recorded in ``TEXTS``.

The real ``PromptServer.send_progress_text(text, node_id)`` sends the text to the frontend over the
websocket (binary event 3), which shows it on the node with that id; each message replaces the last.
"""

TEXTS = []  # (node_id, text) of every message


class PromptServer:
    instance = None

    def send_progress_text(self, text, node_id, sid=None):
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        TEXTS.append((str(node_id), text))


PromptServer.instance = PromptServer()
