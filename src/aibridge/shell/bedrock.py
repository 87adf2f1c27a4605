"""The Amazon Bedrock target: SigV4 signing, credentials, and reply translation.

:class:`BedrockTarget` is a :class:`~aibridge.shell.upstream.Target`: it takes
the Anthropic Messages request the app routed to it, asks the core
(:mod:`aibridge.core.providers.bedrock`) for the Bedrock request, signs it
with botocore's SigV4 signer (``bedrock`` service, the configured region) and
sends it with the shared httpx client. Its :class:`BedrockResponse` hands
the rest of the bridge an ordinary Anthropic reply: event stream frames
become Anthropic SSE (so the usual ``StreamTap`` and Anthropic stream handler
audit it), Bedrock error replies become Anthropic error bodies with the
upstream status.

Credentials: ``bedrock_access_key`` + ``bedrock_access_key_secret``, or
botocore's default chain (environment, ``~/.aws``, SSO, container and
instance roles). Refreshable credentials are refreshed in a worker thread,
never on the event loop. No credentials at all is a startup error.

The passthrough routes answer locally or through Bedrock's own APIs:
``GET /v1/models[/{id}]`` lists the two configured models in Anthropic's
shape (Bedrock has no Anthropic-shaped model list), and
``POST /v1/messages/count_tokens`` calls Bedrock ``CountTokens``.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import attrs
import botocore.session
import httpx
import trio
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from aibridge.config import ConfigError
from aibridge.core import jsonutil
from aibridge.core.auth import mask_secret
from aibridge.core.errors import RouteNotSupported, error_body, error_response_body
from aibridge.core.jsonutil import parse_request_object
from aibridge.core.providers import bedrock as core
from aibridge.core.providers.base import Translation
from aibridge.core.routes import Route, join_url
from aibridge.shell.upstream import HttpxResponse, PreparedRequest, UpstreamResponse, open_httpx

SIGNING_SERVICE = "bedrock"
#: URL scheme of requests the target answers itself (the models list)
LOCAL_SCHEME = "aibridge-local:"
_REGION_IN_HOST = re.compile(r"bedrock-runtime(?:-fips)?\.([a-z0-9-]+)\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$")
#: response headers that describe the upstream body, which the translation replaces
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "x-amzn-errortype"})


def region_from_url(url: str) -> str | None:
    host = urlsplit(url).hostname or ""
    match = _REGION_IN_HOST.search(host)
    return match.group(1) if match else None


def load_credentials(access_key: str | None, secret: str | None) -> Credentials:
    """Static keys when configured, else botocore's default chain; ConfigError if none."""
    if access_key and secret:
        return Credentials(access_key, secret)
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise ConfigError(
            "invalid bedrock_access_key: Bedrock is configured but no AWS credentials were found; "
            "set bedrock_access_key and bedrock_access_key_secret, or provide credentials through "
            "the default AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws, "
            "an instance or container role)"
        )
    return credentials


@attrs.define
class BedrockTarget:
    base_url: str
    region: str
    credentials: Credentials
    model: str
    small_fast_model: str
    provider: str = "bedrock"
    provider_name: str = "bedrock"

    @classmethod
    def from_config(cls, config: Any) -> BedrockTarget:
        base_url = config.bedrock_base_url
        region = config.bedrock_region
        if not region and base_url:
            region = region_from_url(base_url)
            if region is None:
                raise ConfigError(
                    "invalid bedrock_region: required with a bedrock_base_url whose host does not "
                    "name the region (SigV4 signatures are per region)"
                )
        if not base_url:
            if not re.fullmatch(r"[a-z]{2}(?:-[a-z]+)+-\d+", region or ""):
                raise ConfigError(f"invalid bedrock_region: {region!r} is not an AWS region name such as us-east-1")
            base_url = f"https://bedrock-runtime.{region}.amazonaws.com"
        for name in ("bedrock_model", "bedrock_small_fast_model"):
            if not getattr(config, name):
                raise ConfigError(f"invalid {name}: must name a Bedrock model id or inference profile")
        return cls(
            base_url=base_url,
            region=region,
            credentials=load_credentials(config.bedrock_access_key, config.bedrock_access_key_secret),
            model=config.bedrock_model,
            small_fast_model=config.bedrock_small_fast_model,
        )

    # -- prepare (pure decisions, via the core) -------------------------------------

    def prepare(
        self,
        route: Route,
        query: str,
        translation: Translation | None,
        client_headers: list[tuple[str, str]],
        *,
        byok: bool,
        body: bytes,
        method: str,
    ) -> PreparedRequest:
        # The query string is not forwarded: Bedrock's invoke APIs take none
        # (Claude Code's ``?beta=true`` means nothing there).
        if route.name == "models":
            return self._local(route, byok, client_headers)
        betas = [value for name, value in client_headers if name == "anthropic-beta"]
        models = {"model": self.model, "small_fast_model": self.small_fast_model}
        # The Anthropic translation's body, not the client's: it carries any
        # rewrite made before us (MCP tool injection, follow-up turns).
        source = translation.body if translation is not None else body
        parsed = parse_request_object(source)
        if route.name == "count_tokens":
            bedrock = core.translate_count_tokens(parsed, beta_headers=betas, **models)
        elif route.api == "messages":
            bedrock = core.translate_request(source, parsed, beta_headers=betas, **models)
        else:  # pragma: no cover - the route table sends nothing else here
            raise RouteNotSupported(f"route not supported on Bedrock: {method} {route.upstream_path}")
        headers = [*bedrock.headers, ("accept-encoding", "identity")]
        user_agent = dict(client_headers).get("user-agent")
        if user_agent:
            headers.append(("user-agent", user_agent))
        if byok:
            # Bedrock API keys are bearer tokens: a BYOK user's own key goes as is.
            headers.append(("authorization", _byok_bearer(client_headers)))
        return PreparedRequest(
            method="POST",
            url=join_url(self.base_url, bedrock.path or ""),
            headers=headers,
            body=bedrock.body,
            model=bedrock.model,
            credential_kind="byok" if byok else "centralized",
            credential_hint=self._hint(byok, client_headers),
        )

    def _local(self, route: Route, byok: bool, client_headers: list[tuple[str, str]]) -> PreparedRequest:
        return PreparedRequest(
            method="GET",
            url=LOCAL_SCHEME + route.upstream_path,
            headers=[],
            body=b"",
            model="",
            credential_kind="byok" if byok else "centralized",
            credential_hint=self._hint(byok, client_headers),
        )

    def _hint(self, byok: bool, client_headers: list[tuple[str, str]]) -> str:
        if byok:
            return mask_secret(_byok_bearer(client_headers).partition(" ")[2])
        return mask_secret(self.credentials.access_key)

    # -- open (signing and I/O) --------------------------------------------------------

    async def _frozen_credentials(self) -> ReadOnlyCredentials:
        refresh_needed = getattr(self.credentials, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            # Refreshing may call STS/SSO/IMDS: keep that off the event loop.
            return await trio.to_thread.run_sync(self.credentials.get_frozen_credentials)
        return self.credentials.get_frozen_credentials()

    async def sign(self, request: PreparedRequest) -> PreparedRequest:
        """``request`` with SigV4 headers (``authorization``, ``x-amz-date``, ...) added."""
        if any(name == "authorization" for name, _ in request.headers):
            return request  # BYOK bearer token: nothing to sign
        host = urlsplit(request.url).netloc
        aws = AWSRequest(method=request.method, url=request.url, data=request.body,
                         headers={"host": host, **dict(request.headers)})
        SigV4Auth(await self._frozen_credentials(), SIGNING_SERVICE, self.region).add_auth(aws)
        headers = [(name.lower(), value) for name, value in aws.headers.items()]
        return attrs.evolve(request, headers=headers)

    @contextlib.asynccontextmanager
    async def open(self, client: httpx.AsyncClient, request: PreparedRequest) -> AsyncIterator[UpstreamResponse]:
        if request.url.startswith(LOCAL_SCHEME):
            yield self._models_response(request.url[len(LOCAL_SCHEME):])
            return
        signed = await self.sign(request)
        kind = "count_tokens" if request.url.endswith("/count-tokens") else "invoke"
        async with open_httpx(client, signed) as response:
            translated = BedrockResponse(response, kind=kind)
            await translated.buffer()
            yield translated

    def _models_response(self, path: str) -> UpstreamResponse:
        ids = [self.model, self.small_fast_model]
        if path.rstrip("/") == "/v1/models":
            return StaticResponse(200, core.models_list(ids))
        wanted = path.rsplit("/", 1)[-1]
        if wanted in ids:
            return StaticResponse(200, jsonutil.dumps(core.model_object(wanted)))
        error = RouteNotSupported(f"model {wanted!r} is not configured on this Bedrock gateway")
        return StaticResponse(404, error_response_body("anthropic", error))


def _byok_bearer(client_headers: list[tuple[str, str]]) -> str:
    headers = dict(client_headers)
    if "authorization" in headers:
        return headers["authorization"]
    return f"Bearer {headers.get('x-api-key', '')}"


class StaticResponse:
    """A reply the target makes itself (JSON, no upstream call)."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.headers = [("content-type", "application/json")]
        self.decoded = True
        self._body = body

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        yield self._body

    async def aread(self) -> bytes:
        return self._body


class BedrockResponse:
    """A Bedrock reply, seen by the bridge as the Anthropic reply it stands for."""

    def __init__(self, response: HttpxResponse, *, kind: str) -> None:
        self._response = response
        self.status_code = response.status_code
        upstream = dict(response.headers)
        self._content_type = upstream.get("content-type", "")
        self._error_type = upstream.get("x-amzn-errortype", "")
        self._body = b""
        kept = [(k, v) for k, v in response.headers if k not in _BODY_HEADERS]
        if self.status_code >= 400:
            self._mode = "error"
        elif core.EVENTSTREAM_CONTENT_TYPE in self._content_type:
            self._mode = "stream"
        elif kind == "count_tokens":
            self._mode = "count_tokens"
        else:
            self._mode = "passthrough"
        if self._mode == "passthrough":
            self.headers = response.headers
            self.decoded = response.decoded
        else:
            content_type = "text/event-stream" if self._mode == "stream" else "application/json"
            self.headers = [("content-type", content_type), *kept]
            self.decoded = True

    async def buffer(self) -> None:
        """Read and translate a whole-body reply (errors, CountTokens) before the status is used."""
        if self._mode not in ("error", "count_tokens"):
            return
        body = await self._response.aread()
        if self._mode == "error":
            self._body = core.translate_error(self.status_code, self._error_type, body)
            return
        try:
            self._body = core.count_tokens_reply(jsonutil.loads(body))
        except (ValueError, RecursionError) as exc:
            self.status_code = 502
            self._body = error_body("anthropic", f"unexpected Bedrock CountTokens reply: {exc}")

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        if self._mode == "passthrough":
            async for chunk in self._response.aiter_bytes():
                yield chunk
        elif self._mode == "stream":
            translator = core.StreamTranslator()
            async for chunk in self._response.aiter_bytes():
                out = translator.receive_data(chunk)
                if out:
                    yield out
            tail = translator.close()
            if tail:
                yield tail
        else:
            yield self._body

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])
