"""The review web app: one person's browser on this computer, nobody else.

Werkzeug (a small, well-kept WSGI library) does the HTTP; what is ours is who may ask. The server listens on
127.0.0.1 only, on a free port the OS picks. The link the command prints (or hands the browser through a
launcher file only its user can read) carries a one-time code, never the token: the first load exchanges it for
the token, kept in a same-site cookie (and sent back in a header with every change), and the code is then
useless, so a link seen in `ps` or a history opens nothing. Another local user, who can reach the port but has
no cookie, is refused, and so is a web page in the same browser: it cannot read the cookie, cannot set the
header across origins, and a rebound DNS name fails the Host check. Requests are served concurrently, each
connection with a read timeout, so an idle or half-sent request holds only its own thread. The page and its
script are served from here: no CDN, works offline.
"""
from __future__ import annotations

import hmac
import os
from html import escape
import logging
import json
import re
import secrets
import stat
import threading
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from werkzeug.exceptions import (BadRequest, Forbidden, HTTPException, MethodNotAllowed, NotFound,
                                 RequestEntityTooLarge)
from werkzeug.routing import Map, Rule
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from ..errors import DeepfauneError
from .session import ReviewError, ReviewSession

HOST = "127.0.0.1"
MAX_BODY = 1 << 20  # a request body is a list of file names and a label: 1 MiB is far more than enough
MAX_DEPTH = 8  # {"files": [...], "key": ...} is 2 deep; a deeper body is refused before it is parsed
READ_TIMEOUT = 10.0  # seconds a connection may stay silent (idle keep-alive, half-sent request) before it is closed
MAX_CONNECTIONS = 64  # connections served at once; one browser opens about 6
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8",
          "report.css": "text/css; charset=utf-8", "animals.css": "text/css; charset=utf-8"}
#: Served from the report's package: the report's stylesheet is the review's too (one visual language).
SHARED_ASSETS = {"report.css": "deepfaune_plugin.report", "animals.css": "deepfaune_plugin.report"}
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo"}


def _asset(name: str) -> str:
    return resources.files(SHARED_ASSETS.get(name, __package__)).joinpath(name).read_text(encoding="utf-8")


class ReviewApp:
    """The WSGI application: routes, the token check, JSON in and out."""

    def __init__(self, session: ReviewSession, token: str, export: Callable[[], list[str]] | None = None,
                 code: str | None = None):
        self.session, self.token, self.export = session, token, export
        self.code: str | None = code or new_token()  # the link's one-time code; None once used
        self._code_lock = threading.Lock()
        self.port = 0  # set once the server is bound: the Host header must name it
        self.cookie = "deepfaune_review"
        self.urls = Map([
            Rule("/", endpoint="index", methods=["GET"]),
            Rule("/app.js", endpoint="asset", methods=["GET"]),
            Rule("/app.css", endpoint="asset", methods=["GET"]),
            Rule("/report.css", endpoint="asset", methods=["GET"]),
            Rule("/animals.css", endpoint="asset", methods=["GET"]),
            Rule("/api/summary", endpoint="summary", methods=["GET"]),
            Rule("/api/page/<int:number>", endpoint="page", methods=["GET"]),
            Rule("/api/labels", endpoint="labels", methods=["GET"]),
            Rule("/api/label", endpoint="label", methods=["POST"]),
            Rule("/api/export", endpoint="export", methods=["POST"]),
            Rule("/api/fields", endpoint="fields", methods=["POST"]),
            Rule("/api/conflicts", endpoint="conflicts", methods=["GET"]),
            Rule("/api/search", endpoint="search", methods=["GET"]),
            Rule("/api/stations", endpoint="stations", methods=["GET"]),
            Rule("/api/select", endpoint="select", methods=["POST"]),
            Rule("/api/batch/label", endpoint="batch_label", methods=["POST"]),
            Rule("/api/batch/accept", endpoint="batch_accept", methods=["POST"]),
            Rule("/api/undo", endpoint="undo", methods=["POST"]),
            Rule("/api/similar/<ident>", endpoint="similar", methods=["GET"]),
            Rule("/api/similar/label", endpoint="similar_label", methods=["POST"]),
            Rule("/thumb/<ident>.jpg", endpoint="thumb", methods=["GET"]),
            Rule("/large/<ident>.jpg", endpoint="large", methods=["GET"]),
            Rule("/plain/<ident>.jpg", endpoint="plain", methods=["GET"]),
            Rule("/api/boxes", endpoint="boxes", methods=["POST"]),
            Rule("/media/<ident>", endpoint="media", methods=["GET"]),
            Rule("/api/repeats", endpoint="repeats", methods=["GET"]),
            Rule("/api/repeat", endpoint="repeat", methods=["POST"]),
        ])

    # -- who may ask

    def _allowed_host(self, request: Request) -> bool:
        return request.host in {f"{HOST}:{self.port}", f"localhost:{self.port}"}

    def _has_token(self, request: Request, write: bool) -> bool:
        given = request.headers.get("X-Review-Token", "") if write else request.cookies.get(self.cookie, "")
        return hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))

    def _take_code(self, request: Request) -> bool:
        """The link's code, on the page's first load only: it is spent here, whoever brings it."""
        given = request.args.get("c", "")
        with self._code_lock:
            if self.code is None or not given or not hmac.compare_digest(given.encode("utf-8"),
                                                                          self.code.encode("utf-8")):
                return False
            self.code = None
            return True

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = MAX_BODY
        try:
            if not self._allowed_host(request):
                raise Forbidden("this review answers requests for 127.0.0.1 only")
            endpoint, values = self.urls.bind_to_environ(environ).match()
            if not self._has_token(request, write=request.method == "POST") and not (
                    endpoint == "index" and self._take_code(request)):
                raise Forbidden("this review needs the link `deepfaune review` printed (each link opens it "
                                "once: start the review again for a new one)")
            response = getattr(self, f"on_{endpoint}")(request, **values)
        except ReviewError as err:
            response = self._json({"error": str(err)}, 400)
        except RequestEntityTooLarge:
            response = self._json({"error": f"request body over {MAX_BODY} bytes: refused"}, 413)
        except (NotFound, MethodNotAllowed, Forbidden, BadRequest) as err:
            response = Response(f"{err.code} {err.description}\n", status=err.code, mimetype="text/plain")
        except HTTPException as err:
            response = err.get_response(environ)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = ("private, max-age=3600" if request.path.startswith(
            ("/thumb/", "/large/", "/plain/", "/media/"))
                                             else "no-store")
        return response(environ, start_response)

    # -- endpoints

    def on_index(self, request: Request) -> Response:
        source = Path(self.session.source)
        html = _asset("app.html").replace("{{TOKEN}}", self.token).replace(
            "{{SOURCE}}", escape(source.name or str(source)))
        response = Response(html, mimetype="text/html")
        response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/")
        return response

    def on_asset(self, request: Request) -> Response:
        name = request.path.lstrip("/")
        return Response(_asset(name), content_type=ASSETS[name])

    def on_summary(self, request: Request) -> Response:
        with self.session.lock:
            return self._json(self.session.summary())

    def on_page(self, request: Request, number: int) -> Response:
        with self.session.lock:
            return self._json(self.session.page(number))

    def on_labels(self, request: Request) -> Response:
        with self.session.lock:
            return self._json(self.session.labels())

    def on_label(self, request: Request) -> Response:
        body = self._body(request)
        files, key = body.get("files"), body.get("key")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files) or not (
                key is None or isinstance(key, str)):
            raise BadRequest("expects {\"files\": [relpath, ...], \"key\": label or null}")
        with self.session.lock:
            return self._json(self.session.set_labels(files, key))

    # -- what ecologists record (issue 33.1), many at once and search (33.2, 33.5)

    def on_fields(self, request: Request) -> Response:
        body = self._body(request)
        files, values = body.get("files"), body.get("values")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files) or not isinstance(
                values, dict) or not all(v is None or isinstance(v, (str, int)) for v in values.values()):
            raise BadRequest("expects {\"files\": [relpath, ...], \"values\": {field: text, number or null}}")
        with self.session.lock:
            return self._json(self.session.set_fields(files, values))

    def on_conflicts(self, request: Request) -> Response:
        with self.session.lock:
            return self._json(self.session.conflicts())

    def on_search(self, request: Request) -> Response:
        with self.session.lock:
            return self._json(self.session.search(request.args.get("q", "")))

    def on_stations(self, request: Request) -> Response:
        with self.session.lock:
            return self._json(self.session.stations())

    def on_select(self, request: Request) -> Response:
        body = self._body(request)
        with self.session.lock:
            return self._json(self.session.select(body.get("filter")))

    def on_batch_label(self, request: Request) -> Response:
        body = self._body(request)
        if not isinstance(body.get("key"), str):
            raise BadRequest("expects {\"filter\": {...}, \"key\": label}")
        with self.session.lock:
            return self._json(self.session.batch_label(body.get("filter"), body["key"]))

    def on_batch_accept(self, request: Request) -> Response:
        body = self._body(request)
        with self.session.lock:
            return self._json(self.session.batch_accept(body.get("filter")))

    def on_undo(self, request: Request) -> Response:
        self._body(request)
        with self.session.lock:
            return self._json(self.session.undo())

    # -- the pictures like one (issue 34.5), labelled at once as a batch

    def on_similar(self, request: Request, ident: str) -> Response:
        try:
            n = int(request.args.get("n", "24"))
        except ValueError:
            raise BadRequest("n: a number of pictures is expected") from None
        with self.session.lock:
            return self._json(self.session.similar(ident, n))

    def on_similar_label(self, request: Request) -> Response:
        body = self._body(request)
        files, key = body.get("files"), body.get("key")
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files) or not isinstance(key, str):
            raise BadRequest("expects {\"files\": [relpath, ...], \"key\": label}")
        with self.session.lock:
            return self._json(self.session.label_files(files, key))

    def on_export(self, request: Request) -> Response:
        if self.export is None:
            raise NotFound("this review was started without a way to export")
        with self.session.lock:
            try:
                written = self.export()
            except DeepfauneError as err:  # a .ddb Timelapse holds, a package being written: said in the page
                return self._json({"error": f"write back failed: {err}"}, 409)
        return self._json({"written": written})

    def on_thumb(self, request: Request, ident: str, large: bool = False) -> Response:
        with self.session.lock:
            path = self.session.thumbnail(ident, large)
        if path is None:
            raise NotFound("no such file in this review, or it cannot be read")
        return Response(Path(path).read_bytes(), mimetype="image/jpeg")

    def on_large(self, request: Request, ident: str) -> Response:
        return self.on_thumb(request, ident, large=True)

    # -- the boxes a person draws, and a video's clip (issue 33.3, 33.6)

    def on_plain(self, request: Request, ident: str) -> Response:
        """The enlarged picture without a box drawn in (the page draws the boxes, to edit them)."""
        with self.session.lock:
            path = self.session.thumbnail(ident, large=True, plain=True)
        if path is None:
            raise NotFound("no such file in this review, or it cannot be read")
        return Response(Path(path).read_bytes(), mimetype="image/jpeg")

    def on_boxes(self, request: Request) -> Response:
        body = self._body(request)
        rel, boxes = body.get("file"), body.get("boxes")
        if not isinstance(rel, str) or not (boxes is None or isinstance(boxes, list)):
            raise BadRequest('expects {"file": relpath, "boxes": [{"c", "x", "y", "w", "h"}, ...] or null}')
        with self.session.lock:
            return self._json(self.session.set_boxes(rel, boxes))

    def on_media(self, request: Request, ident: str) -> Response:
        """A video of the review by its id (never a path from the request), with Range requests (seeking)."""
        with self.session.lock:
            path = self.session.media(ident)
        if path is None:
            raise NotFound("no such video in this review")
        try:  # still the regular file the review listed (a link put in its place is not followed)
            status = os.stat(path, follow_symlinks=False)
        except OSError:
            raise NotFound("this video cannot be read now") from None
        if not stat.S_ISREG(status.st_mode):
            raise NotFound("this video cannot be read now")
        # by path: werkzeug then knows the size and answers Range requests (206), which seeking needs
        return send_file(path, request.environ, mimetype=VIDEO_TYPES.get(path.suffix.lower(),
                                                                          "application/octet-stream"),
                         conditional=True, etag=False, last_modified=status.st_mtime)

    # -- the places --drop-repeats set aside, confirmed or restored (issue 32)

    def on_repeats(self, request: Request) -> Response:
        with self.session.lock:
            return self._json(self.session.repeats())

    def on_repeat(self, request: Request) -> Response:
        body = self._body(request)
        place, decision = body.get("place"), body.get("decision")
        if not isinstance(place, str) or decision not in ("confirm", "restore", None):
            raise BadRequest('expects {"place": id, "decision": "confirm", "restore" or null}')
        with self.session.lock:
            return self._json(self.session.set_repeat(place, decision))

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        data = request.get_data(cache=False) or b"{}"  # over MAX_BODY: RequestEntityTooLarge
        if _depth(data) > MAX_DEPTH:
            raise BadRequest(f"JSON nested over {MAX_DEPTH} levels: refused")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise BadRequest(f"not JSON: {err}") from None
        if not isinstance(body, dict):
            raise BadRequest("expects a JSON object")
        return body

    @staticmethod
    def _json(data: Any, status: int = 200) -> Response:
        return Response(json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json")


def _depth(data: bytes) -> int:
    """How deep a JSON text nests (brackets outside strings), counted without parsing it."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b"", data)):
        depth += 1 if m.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
    return deepest


class _Handler(WSGIRequestHandler):
    """A connection that says nothing for READ_TIMEOUT seconds is closed (StreamRequestHandler's timeout)."""

    timeout = READ_TIMEOUT


class _Server(ThreadedWSGIServer):
    """A thread per connection, at most MAX_CONNECTIONS at once (the next wait in the listen queue)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address):
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class ReviewServer:
    """The app on 127.0.0.1 and a free port; `url` is the one link that opens it."""

    def __init__(self, app: ReviewApp, port: int = 0, timeout: float = READ_TIMEOUT):
        check_port(port)
        self.app = app
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per thumbnail would bury what we say
        handler = type("Handler", (_Handler,), {"timeout": timeout})
        self.server = _Server(HOST, port, app, handler=handler)
        self.server.daemon_threads = True
        app.port = self.server.server_port
        # cookies are shared by every port of a host: one name per review, so two reviews open side by side
        # do not log each other out
        app.cookie = f"deepfaune_review_{app.port}"
        self.url = f"http://{HOST}:{app.port}/?c={app.code}"  # opens the review once
        self.thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def start(self) -> "ReviewServer":
        """Serve from a background thread (tests, and a caller that does something else meanwhile)."""
        self.thread = threading.Thread(target=self.server.serve_forever, name="deepfaune-review", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown() if self.thread is not None else None
        self.server.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)


def check_port(port: int) -> int:
    """A TCP port, or 0 for a free one (the OS would take 70000 as 4464, and -1 is no port at all)."""
    if not 0 <= port <= 65535:
        raise ReviewError(f"--port {port}: give a port from 1 to 65535, or 0 for a free one")
    return port


def new_token() -> str:
    return secrets.token_urlsafe(24)
