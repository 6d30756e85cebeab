"""An askdocs app served by uvicorn on a free loopback port, in a thread: the server tests' one way to run it."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """``with Running(app, port) as r:`` serves ``app`` at ``r.url`` until the block ends.

    With ``settings``, uvicorn is configured as ``askdocs serve`` configures it (``uvicorn_config``: h11 and
    its header bound, the shutdown grace), which the limit tests need.
    """

    def __init__(self, app: Any, port: int, settings: Any = None) -> None:
        self.url = f"http://127.0.0.1:{port}"
        if settings is None:
            config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        else:
            from askdocs.server.app import uvicorn_config

            config = uvicorn_config(app, settings, host="127.0.0.1", port=port)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.time() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
