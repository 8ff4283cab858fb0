"""Milvus behind the backend interface, through pymilvus' ``MilvusClient``.

The same code talks to Milvus Lite (``uri`` a local ``*.db`` path: an embedded server in this
process, for development and tests; ``milvus-lite server`` shares one between processes) and
to a Milvus standalone or cluster (``uri="http://host:19530"``, ``token``).

Versions: one collection per published version, ``<prefix>_v_<version>``, and one alias,
``<prefix>_current``, that names the current one. A build writes into its own collection, which
no reader is pointed at; only when it holds every row, is indexed and loaded is it marked
complete, and only a complete one can be made current. The mark is an alias of its own,
``<collection>_complete`` (the version's figures are collection properties too, but Milvus 2.3
forgets altered properties when it restarts, while it keeps aliases: checked). Switching the
alias is a single operation on the server, so every process and host searching
``<prefix>_current`` moves at the same moment, with nothing to copy or reload; the previous
collection stays, so a rollback is one more switch (``activate``), and ``drop`` removes an old
one; ``sweep`` removes what the caller's registry does not know and builds a crash left behind. A collection per version (rather than one collection rebuilt in place) is
what makes a half-built state unreachable and a rollback instant; it costs the disk of the
versions kept.

Live changes: ``upsert``, ``delete`` and ``set_visible`` write to the current collection and
to any collection still being built (so a publish running meanwhile does not lose them), and
are searchable at once: no fresh segment. Hidden rows stay in the collection with
``visible = false`` and the search filters them (``filter="visible == true"``), so ``k``
results are ``k`` visible rows. Servers from 2.6.2 (and Milvus Lite) change ``visible`` alone
(a partial upsert); older ones (2.3 to 2.6.1, what many deployments run) refuse a row without
its vector, so there the row is read with its vector and written whole. The server's version
is asked once per connection.

pymilvus reads ``MILVUS_URI`` from the environment when it is imported and refuses anything but
an http(s) URL, while this project's ``MILVUS_URI`` may name a Milvus Lite file: every import of
pymilvus goes through :func:`import_pymilvus`, which hides the variable from it.

Every Milvus or network failure becomes :class:`IndexUnavailable`; the client is created on
first use and again after a failed connection, so a restarted server is picked up.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from urllib.parse import urlsplit

import numpy as np

from indexer.backends.base import (
    Batch,
    IndexBackend,
    IndexReader,
    IndexUnavailable,
    VersionInfo,
    VersionNotFound,
    check_batch,
)
from indexer.index import IndexMismatch, new_version_name

logger = logging.getLogger(__name__)

PROPERTY = "search_image."  # collection properties that describe a version
BUILDING, COMPLETE = "building", "complete"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# HNSW, Milvus' usual choice for memory-resident collections; `ef` (search breadth) is raised
# to k for each query, as Milvus requires. docs/performance.md has the recall these give.
DEFAULT_INDEX_TYPE = "HNSW"
DEFAULT_INDEX_PARAMS = {"M": 16, "efConstruction": 200}
DEFAULT_SEARCH_PARAMS = {"ef": 128}
CONNECT_FAILED = 2  # pymilvus' code when the server cannot be reached
PARTIAL_UPSERT_SINCE = (2, 6, 2)  # the first server release that upserts a row without its vector
ABANDONED_BUILD_SECONDS = 24 * 3600  # a build collection older than this was left by a crash


class MilvusReader(IndexReader):
    def __init__(self, backend: MilvusBackend, collection: str, info: VersionInfo):
        self.backend = backend
        self.collection = collection
        self.info = info

    filters_ids = True

    def query(
        self,
        vector: np.ndarray,
        k: int,
        *,
        only_visible: bool = True,
        exclude_ids: Sequence[int] = (),
        among_ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        vector = np.asarray(vector, dtype=np.float32).ravel()
        if vector.shape[0] != self.info.dim:
            raise IndexMismatch(f"query has {vector.shape[0]} dimensions, index {self.version} has {self.info.dim}")
        if k <= 0 or (among_ids is not None and not len(among_ids)):
            return []
        conditions = ["visible == true"] if only_visible else []
        if among_ids is not None:
            # Inside the search (a bitset over the graph), so k of those ids come back however
            # few of the collection they are.
            conditions.append(f"id in {[int(pk) for pk in among_ids]}")
        if len(exclude_ids):
            conditions.append(f"id not in {[int(pk) for pk in exclude_ids]}")
        hits = self.backend._search(self.collection, vector, k, " and ".join(conditions))
        return [(int(hit["id"]), float(hit["distance"])) for hit in hits]  # COSINE: the similarity

    def __len__(self) -> int:
        return self.backend._count(self.collection)


class MilvusBackend(IndexBackend):
    name = "milvus"
    needs_fresh_segment = False
    filters_visibility = True

    def __init__(
        self,
        uri: str,
        *,
        token: str = "",
        prefix: str = "search_image",
        index_type: str = DEFAULT_INDEX_TYPE,
        index_params: dict | None = None,
        search_params: dict | None = None,
        consistency_level: str = "Bounded",
        timeout: float = 10.0,
        index_timeout: float = 3600.0,
        write_batch: int = 2000,
    ):
        if not NAME.fullmatch(prefix):
            raise ValueError(f"collection prefix {prefix!r}: letters, digits and underscores, not starting with a digit")
        self.uri = uri
        self.token = token
        self.prefix = prefix
        self.alias = f"{prefix}_current"
        self.index_type = index_type
        self.index_params = DEFAULT_INDEX_PARAMS if index_params is None else index_params
        self.search_params = DEFAULT_SEARCH_PARAMS if search_params is None else search_params
        # "Bounded" searches may miss writes of the last few seconds (the caller's database
        # filter covers a just-hidden row); "Strong" sees every write, at some latency.
        self.consistency_level = consistency_level
        self.timeout = timeout  # per call: a hung server fails the call instead of the request
        self.index_timeout = index_timeout  # how long a publish waits for the server to index
        self.write_batch = write_batch  # rows per insert call (2000 x 512-d is ~4 MB, under gRPC's 64 MB)
        self._client = None
        self._client_lock = threading.RLock()  # close() runs inside `client` when connecting fails
        self._complete: dict[str, VersionInfo] = {}  # collection -> info; complete ones never change
        self._partial_upserts: bool | None = None  # whether this client's server takes them; asked once

    # -- versions ---------------------------------------------------------------------------

    def collection(self, version: str) -> str:
        return f"{self.prefix}_v_{re.sub(r'[^A-Za-z0-9_]', '_', version)}"

    def publish_batches(
        self, batches: Iterable[Batch], *, model_id: str, version: str | None = None
    ) -> VersionInfo:
        version = version or new_version_name()
        name = self.collection(version)
        started = time.perf_counter()
        dim = None
        try:
            for batch in batches:
                ids, vectors, visible = check_batch(*batch)
                if not len(ids):
                    continue
                if dim is None:
                    dim = vectors.shape[1]
                    self._create(name, version=version, model_id=model_id, dim=dim)
                elif vectors.shape[1] != dim:
                    raise ValueError(f"vectors of {vectors.shape[1]} dimensions in a {dim}-d publish")
                self._write(name, ids, vectors, visible)
            if dim is None:
                raise ValueError("nothing to publish: no vectors")
            with self._engine(f"finish building {name}"):
                self.client.flush(name, timeout=self.timeout)
                self._wait_for_index(name)
                self.client.load_collection(name, timeout=self.index_timeout)
            info = VersionInfo(
                version=version,
                model=model_id,
                dim=dim,
                item_count=self._count(name),
                created_at=_now(),
                build_seconds=round(time.perf_counter() - started, 3),
            )
            with self._engine(f"mark {name} complete"):
                self.client.create_alias(name, f"{name}_complete", timeout=self.timeout)
                self.client.alter_collection_properties(
                    name,
                    properties={
                        PROPERTY + "state": COMPLETE,
                        PROPERTY + "item_count": str(info.item_count),
                        PROPERTY + "created_at": info.created_at,
                        PROPERTY + "build_seconds": str(info.build_seconds),
                    },
                    timeout=self.timeout,
                )
        except BaseException:
            if dim is not None:
                self._drop_quietly(name)
            raise
        self._complete[name] = info
        return info

    def versions(self) -> list[VersionInfo]:
        infos = []
        for name in self._collections():
            state, info, _ = self._describe(name)
            if state == COMPLETE:
                infos.append(info)
        return sorted(infos, key=lambda info: info.version)

    def current_version(self) -> str | None:
        name = self._current_collection()
        if name is None:
            return None
        state, info, _ = self._describe(name)
        return info.version if state == COMPLETE else None

    def activate(self, version: str) -> None:
        name = self._require_complete(version)
        with self._engine(f"point {self.alias} at {name}"):
            self.client.load_collection(name, timeout=self.index_timeout)  # readers must find it loaded
            if self.alias in self.client.list_aliases(timeout=self.timeout)["aliases"]:
                self.client.alter_alias(name, self.alias, timeout=self.timeout)
            else:
                self.client.create_alias(name, self.alias, timeout=self.timeout)
        logger.info("Milvus alias %s now names %s", self.alias, name)

    def open(self, version: str | None = None) -> MilvusReader:
        version = version or self.current_version()
        if version is None:
            raise VersionNotFound(f"no version is current in Milvus (alias {self.alias})")
        name = self._require_complete(version)
        self._ensure_loaded(name)
        return MilvusReader(self, name, self._complete[name])

    def drop(self, version: str) -> None:
        name = self.collection(version)
        if name == self._current_collection():
            raise ValueError(f"version {version} is current: activate another before dropping it")
        self._drop(name)

    def drop_all(self) -> None:
        """Every alias and collection under this prefix, the current one too (a test's or a
        benchmark's gallery, when it is done: a server keeps everything)."""
        with self._engine(f"drop everything under {self.prefix}"):
            for alias in self.client.list_aliases(timeout=self.timeout)["aliases"]:
                if alias.startswith(f"{self.prefix}_"):
                    self.client.drop_alias(alias, timeout=self.timeout)
            for name in self._collections():
                self.client.drop_collection(name, timeout=self.timeout)
        self._complete.clear()

    def sweep(self, *, known: Collection[str], older_than: float) -> list[str]:
        dropped = super().sweep(known=known, older_than=older_than)
        self._drop_abandoned_builds()
        return dropped

    def _drop_abandoned_builds(self) -> None:
        for name in self._collections():  # builds that a crashed process left unfinished
            state, _, started = self._describe(name)
            if state == BUILDING and time.time() - started > ABANDONED_BUILD_SECONDS:
                logger.warning("dropping abandoned Milvus build %s", name)
                self._drop(name)

    # -- live changes -----------------------------------------------------------------------

    def upsert(
        self, ids: np.ndarray, vectors: np.ndarray, *, model_id: str, visible: np.ndarray | None = None
    ) -> int:
        ids, vectors, visible = check_batch(ids, vectors, visible)
        if not len(ids):
            return 0
        current, targets = self._write_targets()
        written = 0
        for name, info in targets:
            if info.model.split("#")[0] != model_id.split("#")[0] or info.dim != vectors.shape[1]:
                continue  # another model's version: the next publish re-embeds into its own
            self._write(name, ids, vectors, visible)
            written = len(ids) if name == current else written
        return written

    def delete(self, ids: Sequence[int]) -> int:
        ids = [int(pk) for pk in ids]
        if not ids:
            return 0
        current, targets = self._write_targets()
        for name, _ in targets:
            with self._engine(f"delete from {name}"):
                self.client.delete(name, ids=ids, timeout=self.timeout)
        return len(ids) if current else 0

    def set_visible(self, ids: Sequence[int], visible: bool) -> int:
        ids = [int(pk) for pk in ids]
        if not ids:
            return 0
        current, targets = self._write_targets()
        partial = self.partial_upserts()
        # Without partial upserts the row is written whole, so its vector is read first.
        fields = ["id"] if partial else ["id", "vector"]
        changed = 0
        for name, _ in targets:
            for start in range(0, len(ids), self.write_batch):
                chunk = ids[start : start + self.write_batch]
                with self._engine(f"change visibility in {name}"):
                    # Only the ids the collection holds are written: an upsert of a missing id
                    # would insert a row (without a vector, on a partial upsert).
                    rows = self.client.query(
                        name, filter=f"id in {chunk}", output_fields=fields,
                        consistency_level="Strong", timeout=self.timeout,
                    )
                    rows = [{field: row[field] for field in fields} | {"visible": bool(visible)} for row in rows]
                    if rows and partial:
                        self.client.upsert(name, rows, partial_update=True, timeout=self.timeout)
                    elif rows:
                        self.client.upsert(name, rows, timeout=self.timeout)
                changed += len(rows) if name == current else 0
        return changed

    def hidden_ids(self) -> set[int]:
        name = self._current_collection()
        if name is None:
            return set()
        hidden: set[int] = set()
        with self._engine(f"list the hidden rows of {name}"):
            rows = self.client.query_iterator(
                name, batch_size=self.write_batch, filter="visible == false", output_fields=["id"],
                consistency_level="Strong", timeout=self.timeout,
            )
            try:
                while batch := rows.next():
                    hidden.update(int(row["id"]) for row in batch)
            finally:
                rows.close()
        return hidden

    def partial_upserts(self) -> bool:
        """Whether the server changes one field of a row without the others (Milvus >= 2.6.2,
        and Milvus Lite): asked once per connection, as the server may be upgraded meanwhile."""
        if self._partial_upserts is None:
            with self._engine("read the server version"):
                self._partial_upserts = takes_partial_upserts(self.client.get_server_version(timeout=self.timeout))
        return self._partial_upserts

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                try:
                    self._client.close()
                except Exception:  # closing a client whose server is gone
                    pass
                self._client = None
                self._partial_upserts = None

    # -- Milvus calls -----------------------------------------------------------------------

    @property
    def client(self):
        """The ``MilvusClient``, connected on first use (pymilvus is imported only here)."""
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    MilvusClient = import_pymilvus().MilvusClient

                    with self._engine("connect"):
                        # Dedicated: close() really closes it, and the next client dials afresh.
                        self._client = MilvusClient(uri=self.uri, token=self.token, timeout=self.timeout, dedicated=True)
                client = self._client
        return client

    @contextmanager
    def _engine(self, doing: str) -> Iterator[None]:
        """Milvus and network failures, as the one exception the callers handle."""
        try:
            yield
        except Exception as exc:
            if not _is_engine_failure(exc):
                raise
            if getattr(exc, "code", None) == CONNECT_FAILED:
                self.close()  # a new client next time: gRPC's channel would wait out its backoff first
            message = getattr(exc, "message", "") or str(exc) or type(exc).__name__
            raise IndexUnavailable(f"Milvus at {_redacted(self.uri)} could not {doing}: {message}") from exc

    def _search(self, name: str, vector: np.ndarray, k: int, expression: str) -> list[dict]:
        params = dict(self.search_params)
        if "ef" in params:
            params["ef"] = max(int(params["ef"]), k)
        for attempt in (1, 2):
            try:
                with self._engine(f"search {name}"):
                    result = self.client.search(
                        name, data=[vector], limit=k, filter=expression, output_fields=["id"],
                        search_params={"params": params}, consistency_level=self.consistency_level,
                        timeout=self.timeout,
                    )
                return list(result[0])
            except IndexUnavailable as exc:
                # A restarted server may come back with the collection released.
                if attempt == 2 or getattr(exc.__cause__, "code", None) != 101:
                    raise
                self._ensure_loaded(name)
        raise AssertionError("unreachable")

    def _count(self, name: str) -> int:
        with self._engine(f"count {name}"):
            rows = self.client.query(
                name, filter="", output_fields=["count(*)"], consistency_level="Strong", timeout=self.timeout
            )
        return int(rows[0]["count(*)"])

    def _create(self, name: str, *, version: str, model_id: str, dim: int) -> None:
        pymilvus = import_pymilvus()
        DataType, MilvusClient = pymilvus.DataType, pymilvus.MilvusClient
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("visible", DataType.BOOL)
        index = MilvusClient.prepare_index_params()
        index.add_index("vector", index_type=self.index_type, metric_type="COSINE", params=self.index_params)
        with self._engine(f"create {name}"):
            # With its index given here the collection is loaded at once, so writes and
            # visibility changes from other processes can reach it while it is built.
            self.client.create_collection(
                name,
                schema=schema,
                index_params=index,
                consistency_level=self.consistency_level,
                properties={
                    PROPERTY + "state": BUILDING,
                    PROPERTY + "version": version,
                    PROPERTY + "model": model_id,
                    PROPERTY + "started": str(time.time()),
                },
                timeout=self.timeout,
            )

    def _write(self, name: str, ids: np.ndarray, vectors: np.ndarray, visible: np.ndarray | None) -> None:
        for start in range(0, len(ids), self.write_batch):
            stop = start + self.write_batch
            shown = visible[start:stop] if visible is not None else np.ones(len(ids[start:stop]), dtype=bool)
            rows = [
                {"id": int(pk), "vector": vector, "visible": bool(flag)}
                for pk, vector, flag in zip(ids[start:stop], vectors[start:stop], shown)
            ]
            with self._engine(f"write to {name}"):
                # Upsert, not insert: Milvus keeps duplicate primary keys on insert, and a
                # concurrent writer may already have written a row of this build.
                self.client.upsert(name, rows, timeout=self.timeout)

    def _wait_for_index(self, name: str) -> None:
        deadline = time.monotonic() + self.index_timeout
        while True:
            index = self.client.describe_index(name, index_name="vector", timeout=self.timeout)
            if index.get("state") in (None, "Finished") and not index.get("pending_index_rows"):
                return
            if index.get("state") == "Failed":
                raise RuntimeError(f"Milvus could not index {name}: {index.get('index_state_fail_reason')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Milvus did not finish indexing {name} in {self.index_timeout:.0f} s")
            time.sleep(1.0)

    def _ensure_loaded(self, name: str) -> None:
        with self._engine(f"load {name}"):
            state = self.client.get_load_state(name, timeout=self.timeout)["state"]
            if getattr(state, "name", str(state)) != "Loaded":
                self.client.load_collection(name, timeout=self.index_timeout)

    def _collections(self) -> list[str]:
        with self._engine("list collections"):
            names = self.client.list_collections(timeout=self.timeout)
        return sorted(name for name in names if name.startswith(f"{self.prefix}_v_"))

    def _current_collection(self) -> str | None:
        with self._engine(f"read alias {self.alias}"):
            # Listing first: describing a missing alias is an error the client logs loudly.
            if self.alias not in self.client.list_aliases(timeout=self.timeout)["aliases"]:
                return None
            return self.client.describe_alias(self.alias, timeout=self.timeout)["collection_name"]

    def _describe(self, name: str) -> tuple[str | None, VersionInfo | None, float]:
        """``(state, info, started)`` of one of our collections: state ``COMPLETE`` or
        ``BUILDING`` (a building one's info has no count yet), or ``None`` for a collection
        that is gone or not ours. Complete ones are remembered: they never change."""
        if name in self._complete:
            return COMPLETE, self._complete[name], 0.0
        with self._engine(f"describe {name}"):
            try:
                described = self.client.describe_collection(name, timeout=self.timeout)
            except Exception as exc:
                if getattr(exc, "code", None) == 100:  # dropped meanwhile
                    return None, None, 0.0
                raise
        properties = described.get("properties", {})
        state = properties.get(PROPERTY + "state")
        if state not in (BUILDING, COMPLETE):
            return None, None, 0.0
        if f"{name}_complete" in described.get("aliases", []):
            state = COMPLETE  # whatever the properties say now (a restarted 2.3 server forgets them)
        item_count = properties.get(PROPERTY + "item_count")
        if state == COMPLETE and item_count is None:
            item_count = self._count(name)
        info = VersionInfo(
            version=properties[PROPERTY + "version"],
            model=properties[PROPERTY + "model"],
            dim=int(next(field["params"]["dim"] for field in described["fields"] if field["name"] == "vector")),
            item_count=int(item_count or 0),
            created_at=properties.get(PROPERTY + "created_at", ""),
            build_seconds=float(properties.get(PROPERTY + "build_seconds", 0)),
        )
        if state == COMPLETE:
            self._complete[name] = info
        return state, info, float(properties.get(PROPERTY + "started", 0))

    def _require_complete(self, version: str) -> str:
        name = self.collection(version)
        state, _, _ = self._describe(name)
        if state != COMPLETE:
            raise VersionNotFound(f"no complete version {version} in Milvus")
        return name

    def _write_targets(self) -> tuple[str | None, list[tuple[str, VersionInfo]]]:
        """The current collection and the ones being built, with what they hold."""
        current = self._current_collection()
        targets = []
        for name in self._collections():
            state, info, _ = self._describe(name)
            if (name == current and state == COMPLETE) or state == BUILDING:
                targets.append((name, info))
        return current, targets

    def _drop(self, name: str) -> None:
        with self._engine(f"drop {name}"):
            if f"{name}_complete" in self.client.list_aliases(timeout=self.timeout)["aliases"]:
                self.client.drop_alias(f"{name}_complete", timeout=self.timeout)  # a collection with aliases stays
            self.client.drop_collection(name, timeout=self.timeout)
        self._complete.pop(name, None)

    def _drop_quietly(self, name: str) -> None:
        try:
            self._drop(name)
        except Exception as exc:  # the server is gone too: prune() removes it later
            logger.warning("could not drop the failed build %s: %s", name, exc)


def import_pymilvus():
    """pymilvus, imported without letting it read ``MILVUS_URI``: it takes that variable as its
    own default connection and raises on anything but an http(s) URL, such as the Milvus Lite
    file this project's ``MILVUS_URI`` may name. The variable is back in the environment
    afterwards (child processes and settings read it), and pymilvus never reads it again."""
    if sys.modules.get("pymilvus") is not None:
        return sys.modules["pymilvus"]
    ours = os.environ.get("MILVUS_URI")
    # Empty rather than absent: pymilvus also loads a .env file (python-dotenv), which fills in
    # only variables that are not set, and a .env is where README puts MILVUS_URI.
    os.environ["MILVUS_URI"] = ""
    try:
        import pymilvus
    finally:
        if ours is None:
            del os.environ["MILVUS_URI"]
        else:
            os.environ["MILVUS_URI"] = ours
    return pymilvus


def takes_partial_upserts(server_version: str) -> bool:
    """From a server's version string: ``v2.6.2`` and later yes, ``v2.3.5-lite`` (the PyPI
    standalone) or ``v2.5.4`` no; Milvus Lite (``milvus_lite-3.2.2``) yes. An unreadable
    version gets the full-row write, which every server takes."""
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", server_version or "")
    return bool(found) and tuple(int(part) for part in found.groups()) >= PARTIAL_UPSERT_SINCE


def _is_engine_failure(exc: BaseException) -> bool:
    import_pymilvus()
    from pymilvus.exceptions import MilvusException, ParamError

    if isinstance(exc, ParamError):
        return False  # a wrong call is a bug here, not an outage
    try:
        import grpc

        if isinstance(exc, grpc.RpcError):
            return True
    except ImportError:
        pass
    return isinstance(exc, (MilvusException, ConnectionError, TimeoutError))


def _redacted(uri: str) -> str:
    """The address without any user:password part, for messages."""
    parts = urlsplit(uri)
    if parts.hostname and parts.password:
        return uri.replace(parts.netloc, parts.hostname + (f":{parts.port}" if parts.port else ""))
    return uri


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
