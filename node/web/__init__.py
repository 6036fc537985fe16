"""The QA web console served by the node (issue 14): server-rendered pages over the node's database.

`create_app` (`sarcoscreen.node.web.app`) builds the Starlette application from the settings and a database engine;
`sarcoscreen web` serves it (`sarcoscreen.node.web.server`), and so do ``serve``/``run`` with
``web.enabled_in_serve``. See docs/web-console.md.
"""

from __future__ import annotations

from sarcoscreen.node.web.app import create_app

__all__ = ["create_app"]
