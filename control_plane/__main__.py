"""``python -m control_plane``: serve with settings from the environment (``TOLLGATE_*``)."""

from __future__ import annotations

import logging

from control_plane.server import serve
from control_plane.settings import Settings


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(Settings.from_env())


if __name__ == "__main__":
    main()
