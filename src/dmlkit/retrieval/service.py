"""The HTTP service of ``dmlkit serve``: FastAPI on uvicorn (``pip install dmlkit[serve]``).

    GET  /                      a page: drop an image, see its neighbours (:mod:`.webpage`)
    POST /search?k=10           form upload ``image`` -> {"k", "threshold", "neighbours": [
                                {"id", "score", "path", "class_name", "match"}, ...]}
    GET  /items/<id>/thumbnail  a PNG of an indexed item
    GET  /health                {"items", "dim", "metric", "threshold", "batches", "batched"}

Uploads larger than ``max_upload_bytes`` are refused with 413 (from the ``Content-Length``
header before the body is read, else after reading at most one byte more than the limit); data
that does not decode as an image gets 415; a bad ``k`` 422. Answers equal
:meth:`Retriever.search <dmlkit.retrieval.retriever.Retriever.search>` on the same image.

Batching: each request decodes and preprocesses its image in a worker thread, then waits in a
queue; one task takes up to ``max_batch`` waiting inputs (those that arrive within
``batch_wait_s`` of the first), embeds them in one forward pass and searches the index once with
the largest ``k`` asked, then answers each request with its own ``k``. Memory: one batch of
inputs and activations.
"""

# no ``from __future__ import annotations``: FastAPI reads the route annotations as objects
import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from dmlkit.retrieval.retriever import Neighbour, Retriever
from dmlkit.retrieval.webpage import PAGE

DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024
MAX_K = 1000


def _web() -> Any:
    try:
        import fastapi
        import python_multipart  # noqa: F401  (which form uploads need)
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "dmlkit serve needs FastAPI, uvicorn and python-multipart: pip install 'dmlkit[serve]'"
        ) from err
    return fastapi


@dataclass
class Request:
    """One image waiting for the batch: its model input ``(C, H, W)``, its ``k``, its answer."""

    inputs: Tensor
    k: int
    answer: asyncio.Future[list[Neighbour]] = field(repr=False)


class Batcher:
    """Collects concurrent requests into batches (module docstring)."""

    def __init__(self, retriever: Retriever, max_batch: int, wait_s: float) -> None:
        self.retriever = retriever
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.queue: asyncio.Queue[Request] = asyncio.Queue()
        self.batches: list[int] = []  # the size of every batch run (tests, benchmarks, /health)

    async def submit(self, inputs: Tensor, k: int) -> list[Neighbour]:
        future: asyncio.Future[list[Neighbour]] = asyncio.get_running_loop().create_future()
        await self.queue.put(Request(inputs, k, future))
        return await future

    def _answer(self, batch: list[Request]) -> list[list[Neighbour]]:
        import torch

        emb = self.retriever.embed_inputs(torch.stack([r.inputs for r in batch]))
        hits = self.retriever.search_vectors(emb, max(r.k for r in batch))
        return [h[: r.k] for h, r in zip(hits, batch, strict=True)]

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            self.batches.append(len(batch))
            try:
                answers = await loop.run_in_executor(None, self._answer, batch)
            except Exception as err:  # every waiting request gets the error
                for request in batch:
                    if not request.answer.done():
                        request.answer.set_exception(err)
                continue
            for request, answer in zip(batch, answers, strict=True):
                if not request.answer.done():
                    request.answer.set_result(answer)


def create_app(
    retriever: Retriever,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    max_batch: int = 32,
    batch_wait_s: float = 0.002,
) -> Any:
    """The FastAPI application (module docstring)."""
    fastapi = _web()
    from fastapi import Query, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    batcher = Batcher(retriever, max_batch, batch_wait_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = fastapi.FastAPI(title="dmlkit search", lifespan=lifespan)
    app.state.batcher = batcher

    @app.middleware("http")
    async def limit_upload(request: Any, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_upload_bytes:
            return JSONResponse(
                {"detail": f"upload of {length} bytes refused: at most {max_upload_bytes} bytes"},
                status_code=413,
            )
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/health")
    def health() -> dict[str, Any]:
        index = retriever.index
        return {
            "items": len(index),
            "dim": index.dim,
            "metric": index.metric,
            "threshold": retriever.threshold,
            "batches": len(batcher.batches),
            "batched": sum(batcher.batches),
        }

    @app.get("/items/{item_id}/thumbnail")
    def thumbnail(item_id: int) -> Response:
        try:
            png = retriever.thumbnail(item_id)
        except KeyError:
            return JSONResponse({"detail": f"no item with id {item_id}"}, status_code=404)
        except (FileNotFoundError, ValueError) as err:
            return JSONResponse({"detail": str(err)}, status_code=410)
        if not png:
            return JSONResponse({"detail": f"item {item_id} has no image"}, status_code=404)
        return Response(png, media_type="image/png")

    @app.post("/search")
    async def search(image: UploadFile, k: int = Query(10, ge=1, le=MAX_K)) -> Any:
        data = await image.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            return JSONResponse(
                {"detail": f"upload refused: more than {max_upload_bytes} bytes"}, status_code=413
            )
        try:
            inputs = await run_in_threadpool(retriever.preprocess, [data])
        except ValueError as err:
            return JSONResponse({"detail": str(err)}, status_code=415)
        hits = await batcher.submit(inputs[0], k)
        return {
            "k": k,
            "threshold": retriever.threshold,
            "neighbours": [hit.to_dict() for hit in hits],
        }

    return app


class BackgroundServer:
    """Runs an app with uvicorn in a thread, bound to ``host`` on ``port`` (0: a free one,
    read back into ``port``); ``stop()`` shuts it down. For tests and benchmarks."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout_s: float = 30.0) -> "BackgroundServer":
        self.thread.start()
        stop = time.monotonic() + timeout_s
        while not self.server.started:
            if time.monotonic() > stop or not self.thread.is_alive():
                raise RuntimeError(f"the server did not start within {timeout_s} s")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[BackgroundServer]:
    """``with running(app) as server: ... server.url ...``"""
    server = BackgroundServer(app, host, port).start()
    try:
        yield server
    finally:
        server.stop()


def serve(
    retriever: Retriever,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    max_batch: int = 32,
) -> None:
    """Serve ``retriever`` until interrupted (binds to ``host``, loopback by default)."""
    import uvicorn

    app = create_app(retriever, max_upload_bytes, max_batch)
    uvicorn.run(app, host=host, port=port, log_level="info")
