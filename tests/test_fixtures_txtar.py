"""The txtar reader the conformance tests share (with the project's own sample archive)."""

from __future__ import annotations

from tests.fixtures_txtar import is_http_response, parse_http_response, parse_txtar

ARCHIVE = b"""A comment line.

-- request --
{"model": "m"}

-- streaming --
data: {"a": 1}\x20\x20

-- non-streaming --
HTTP/2.0 429 Too Many Requests
Content-Length: 17
Content-Type: application/json
Retry-After: 20

{"error": "slow"}


"""


def test_sections_keep_their_exact_bytes() -> None:
    comment, sections = parse_txtar(ARCHIVE)
    assert comment == b"A comment line.\n\n"
    assert sections == {
        "request": b'{"model": "m"}\n\n',
        "streaming": b'data: {"a": 1}  \n\n',  # trailing spaces kept
        "non-streaming": ARCHIVE.split(b"-- non-streaming --\n")[1],
    }


def test_raw_http_section_is_cut_to_its_content_length() -> None:
    section = parse_txtar(ARCHIVE)[1]["non-streaming"]
    assert is_http_response(section)
    raw = parse_http_response(section)
    assert (raw.status, raw.reason, raw.body) == (429, "Too Many Requests", b'{"error": "slow"}')
    assert raw.header("retry-after") == "20"


def test_raw_http_section_without_length_drops_the_archive_line_end() -> None:
    raw = parse_http_response(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\noops\n")
    assert (raw.status, raw.body, raw.headers) == (500, b"oops", (("Content-Type", "text/plain"),))
