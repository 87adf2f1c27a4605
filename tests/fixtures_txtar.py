"""Reading recorded provider traffic in txtar form (``../shared/fixtures``).

txtar (from Go's ``golang.org/x/tools/txtar``): free-text comment, then
sections, each opened by a line ``-- NAME --`` and running to the next such
line. Section bytes are returned exactly as stored (trailing blank lines
included), because tests replay them byte for byte.

A section that starts with ``HTTP/`` is a raw HTTP response; see
:func:`parse_http_response`. Generic on purpose: Anthropic, OpenAI chat,
Responses, Bedrock and MCP conformance tests all read fixtures through here.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from aibridge.fake.upstream import Reply

_MARKER = re.compile(rb"^-- (.+?) --[ \t]*\r?$", re.MULTILINE)


def parse_txtar(data: bytes) -> tuple[bytes, dict[str, bytes]]:
    """Split an archive into (comment, {section name: section bytes})."""
    markers = list(_MARKER.finditer(data))
    if not markers:
        return data, {}
    comment = data[: markers[0].start()]
    sections: dict[str, bytes] = {}
    for marker, following in zip(markers, [*markers[1:], None], strict=True):
        start = marker.end() + 1  # past the marker's own line end
        end = following.start() if following is not None else len(data)
        name = marker.group(1).decode()
        if name in sections:
            raise ValueError(f"txtar: section {name!r} appears twice")
        sections[name] = data[start:end]
    return comment, sections


def read_txtar(path: str | Path) -> dict[str, bytes]:
    """The sections of the archive at ``path``, by name."""
    return parse_txtar(Path(path).read_bytes())[1]


def is_http_response(section: bytes) -> bool:
    return section.startswith(b"HTTP/")


@attrs.frozen(kw_only=True)
class HTTPResponse:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def parse_http_response(section: bytes) -> HTTPResponse:
    """A raw ``HTTP/x.y STATUS REASON`` section: status line, headers, blank line, body.

    The body is cut to ``Content-Length`` when the header is present (the
    archive adds blank lines after it); otherwise it is the rest of the
    section without the archive's final line end.
    """
    head, sep, body = section.partition(b"\r\n\r\n")
    if not sep or b"\n\n" in head:
        head, sep, body = section.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP status line: {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"malformed header line: {line!r}")
        headers.append((name.strip(), value.strip()))
    response = HTTPResponse(
        status=int(status_line[1]),
        reason=status_line[2] if len(status_line) > 2 else "",
        headers=tuple(headers),
        body=body,
    )
    length = response.header("content-length")
    if length is not None:
        return attrs.evolve(response, body=body[: int(length)])
    return attrs.evolve(response, body=body[:-1] if body.endswith(b"\n") else body)


def upstream_reply(section: bytes, stream: bool, *, write_size: int) -> Reply:
    """What the fake upstream plays for one recorded section: a raw HTTP response as
    recorded, or the body as an event stream (written ``write_size`` bytes at a time so
    that events straddle the upstream's writes) or a JSON reply."""
    if is_http_response(section):
        raw = parse_http_response(section)
        headers = tuple((k, v) for k, v in raw.headers if k.lower() != "content-length")
        return Reply(status=raw.status, headers=headers, body=raw.body)
    content_type = "text/event-stream" if stream else "application/json"
    return Reply(headers=(("content-type", content_type),), body=section, write_size=write_size if stream else 0)
