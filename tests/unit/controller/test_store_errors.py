"""How the state store's error replies become exceptions."""

from __future__ import annotations

import hiredis
from redis.exceptions import BusyLoadingError, ConnectionError, NoScriptError, ResponseError

from controller.store.wire import error_of


def test_a_loading_redis_counts_as_unavailable() -> None:
    error = error_of(hiredis.ReplyError("LOADING Redis is loading the dataset in memory"))
    assert isinstance(error, BusyLoadingError) and isinstance(error, ConnectionError)


def test_other_error_replies_stay_response_errors() -> None:
    assert isinstance(error_of(hiredis.ReplyError("NOSCRIPT No matching script.")), NoScriptError)
    wrong = error_of(hiredis.ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value"))
    assert type(wrong) is ResponseError
    assert error_of("OK") is None
