"""The usage log's ``mode``: which kind of upstream API a row is for."""

from __future__ import annotations

CHAT = 1  # chat completions, stream or not (App API chat, instructions, relay)
EMBEDDING = 2
IMAGE = 3
AUDIO = 4  # text to speech
VIDEO = 5  # asynchronous jobs (video, or any http_job platform)

BY_MODULE = {"chat": CHAT, "embedding": EMBEDDING, "image": IMAGE, "audio": AUDIO, "video": VIDEO}
NAMES = {v: k for k, v in BY_MODULE.items()}
