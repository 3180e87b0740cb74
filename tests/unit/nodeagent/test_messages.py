"""The shared wire helpers: SAS redaction and the node signature."""

from __future__ import annotations

import logging

from nodeagent.messages import RedactingFormatter, node_signature, redact, signatures_match


def test_redact_hides_every_sas_signature_and_keeps_the_rest() -> None:
    url = "http://h/c/b?sv=2025&sp=r&sig=abc%2Bdef%3D&se=2026"
    assert redact(url) == "http://h/c/b?sv=2025&sp=r&sig=REDACTED&se=2026"
    assert redact('{"u": "x?SIG=zzz", "v": "y?sig=q"}') == '{"u": "x?SIG=REDACTED", "v": "y?sig=REDACTED"}'


def test_formatter_redacts_messages() -> None:
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "upload to %s failed", ("http://h/c?sig=secret",), None)
    assert "secret" not in RedactingFormatter("%(message)s").format(record)


def test_signature_covers_method_path_date_and_body() -> None:
    base = node_signature("s", "POST", "/p", "date", b"body")
    assert signatures_match(base, node_signature("s", "post", "/p", "date", b"body"))
    for other in (
        node_signature("t", "POST", "/p", "date", b"body"),
        node_signature("s", "GET", "/p", "date", b"body"),
        node_signature("s", "POST", "/q", "date", b"body"),
        node_signature("s", "POST", "/p", "other", b"body"),
        node_signature("s", "POST", "/p", "date", b"bodx"),
    ):
        assert not signatures_match(base, other)
