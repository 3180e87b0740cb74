"""`python -m controller`: load settings from the environment and serve the API."""

from __future__ import annotations

import logging
import sys

import uvicorn
from pydantic import ValidationError

from controller.app import create_app
from controller.settings import ControllerSettings
from nodeagent.messages import RedactingFormatter


def load_settings() -> ControllerSettings | None:
    """Settings from CONTROLLER_* variables; prints which variable is wrong and returns None."""
    try:
        return ControllerSettings()
    except ValidationError as error:
        for problem in error.errors():
            name = "CONTROLLER_" + "_".join(str(part) for part in problem["loc"]).upper()
            print(f"controller: {name}: {problem['msg']}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; exit code 2 on bad settings."""
    settings = load_settings()
    if settings is None:
        return 2
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler])
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
