"""What both pages share: the address they listen on, the server, pictures as PNG, the templates.

The pages are Starlette applications (an ASGI framework) run by uvicorn (an ASGI server); live
numbers reach the browser as server-sent events.  Nothing is served but the routes each page
declares: no folder is mapped to URLs, a frame or figure is named by its number in the page's
own list, so no path a browser sends can reach another file (anything else is 404).  Figures
are drawn on the server with matplotlib and sent as PNG: no JavaScript library, no CDN.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import socket
from typing import AsyncIterator, Callable

import numpy as np

from spidarknet.core.defaults import PAGE_HOST, PAGE_PORT
from spidarknet.core.errors import ConfigError
from spidarknet.core.outputs import json_ready

log = logging.getLogger(__name__)

#: where the pages listen unless --host says otherwise (:data:`spidarknet.core.defaults.PAGE_HOST`)
DEFAULT_HOST = PAGE_HOST
#: a port of 0 lets the system choose a free one (printed when the page is up)
DEFAULT_PORT = PAGE_PORT


def host_warning(host: str) -> str | None:
    """The warning to print when ``host`` lets other machines reach the page; None for a
    loopback address."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (f"--host {host}: the page is reachable from other machines on that network, without a password; "
            f"anyone who reaches it sees the run's frames (leave --host out to keep it on "
            "127.0.0.1 and use an SSH tunnel: ssh -L PORT:127.0.0.1:PORT this-machine)")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: a free one), or a ConfigError that says
    what to change."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: give a port between 1 and 65535 (0 picks a free one)")
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: not an address of this machine ({exc})") from None
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(info[4])
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port "
                          "(0 picks a free one)") from None
    sock.listen(64)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def run_server(app, sock: socket.socket, on_ready: Callable[[str], object] | None = None) -> None:
    """Serve ``app`` on the bound ``sock`` until interrupted (Ctrl-C, SIGTERM); ``on_ready`` is
    given the page's address once it listens."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            app.state.stopping = True  # event streams end, so the connections close cleanly
            super().handle_exit(sig, frame)
    app.state.stopping = False
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3,
                            lifespan="on")
    server = Server(config)
    url = url_of(sock)

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if server.started and on_ready is not None:
            on_ready(url)
        await serving
    asyncio.run(main())


def png_of_figure(fig) -> bytes:
    """A matplotlib figure (see :func:`spidarknet.report.plot.figure`) as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def png_of_rgb(rgb: np.ndarray) -> bytes:
    """An (h, w, 3) uint8 image as PNG bytes (zlib's fastest level: for a page on this machine
    or a beamline network, the time to draw counts, not the bytes)."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def png_response(data: bytes, cache_s: int = 0):
    """PNG bytes; ``cache_s``: how long the browser may keep them (for a picture whose address
    names what it shows, so it never changes)."""
    from starlette.responses import Response
    cache = f"private, max-age={cache_s}, immutable" if cache_s else "no-store"
    return Response(data, media_type="image/png", headers={"Cache-Control": cache})


def json_response(data: dict, status_code: int = 200):
    from starlette.responses import JSONResponse
    return JSONResponse(json_ready(data), status_code=status_code, headers={"Cache-Control": "no-store"})


def not_found():
    from starlette.responses import PlainTextResponse
    return PlainTextResponse("not found", status_code=404)


def sse_response(request, events: Callable[[], AsyncIterator[dict]]):
    """A server-sent-events stream of the JSON objects ``events()`` yields, until the server
    stops (:func:`run_server`)."""
    from starlette.responses import StreamingResponse

    async def stream():
        async for event in events():
            if getattr(request.app.state, "stopping", False):
                break
            if event is not None:
                yield f"data: {json.dumps(json_ready(event), allow_nan=False)}\n\n"
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def render_template(name: str, **context) -> str:
    """The page ``templates/NAME`` of the package, filled (Jinja2, escaped)."""
    import jinja2
    env = jinja2.Environment(loader=jinja2.PackageLoader("spidarknet", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template(name).render(**context)


def html_response(text: str):
    from starlette.responses import HTMLResponse
    return HTMLResponse(text, headers={"Cache-Control": "no-store"})
