"""One model folder loaded the way the server loads it, for scoring batches of rows.

The same parts as ``serval.app.build`` (which this layer may not import), reduced to what one
model needs: the folder's repository as a ``FileSystemSource``, the default runtimes, the keys
layer and composite servables, a ``LifecycleManager`` in explicit mode that loads just this
model (a composite loads its steps), and a ``DataPlane`` through which every batch goes as an
``InferenceRequest``: the same ``model.yaml``, runtime, validation and composition as online.

``BatchModel`` is synchronous (it owns an event loop), so the local engine and a Ray actor
call it alike.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from serval import __version__
from serval.batch.errors import BatchInputError
from serval.core.composition.composite import CompositeServables
from serval.core.composition.keys import keys_layer
from serval.core.composition.layers import Composition, Layer
from serval.core.composition.provider import ServableProvider
from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.errors import ModelNotFoundError
from serval.core.events import EventBus
from serval.core.lifecycle.manager import LifecycleManager, ManagerOptions
from serval.core.lifecycle.options import ControlMode
from serval.core.lifecycle.source import FileSystemSource
from serval.core.load_override import LoadOverride
from serval.core.model_spec import ModelSpec, VersionPolicySpec
from serval.core.servable import CallLimits, Predictor, Servable, ThreadPoolServable
from serval.core.types import InferenceRequest, InferenceResponse, ServableMetadata, Tensor
from serval.runtimes.registry import RuntimeRegistry


class BatchModel:
    """``folder`` (``repo/name``) loaded at ``version`` (None: what its version policy serves,
    the highest). ``threads``: the threads its calls run on (default: the cores)."""

    def __init__(
        self, folder: Path, version: int | None = None, threads: int | None = None
    ) -> None:
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise BatchInputError(f"model folder {str(folder)!r} does not exist")
        self.folder = folder
        self.name = folder.name
        self._version = version
        self._threads = threads or os.cpu_count() or 1
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="serval-batch")
        self._load_pool = ThreadPoolExecutor(2, thread_name_prefix="serval-batch-load")
        source = FileSystemSource(folder.parent)
        events = EventBus()  # no subscribers: a batch job keeps no per-request statistics
        self._manager = LifecycleManager(
            source,
            RuntimeRegistry.default(),
            Composition(self._base, _layer_plan, CompositeServables()),
            self._load_pool,
            events,
            ManagerOptions(control_mode=ControlMode.EXPLICIT, startup_models=()),
        )
        self._dataplane = DataPlane(
            self._manager, events, ServerMetadata("serval-batch", __version__, ())
        )
        self._loaded = False
        self.metadata: ServableMetadata
        self.spec: ModelSpec
        self.served_version: int

    def _base(self, predictor: Predictor, spec: ModelSpec) -> Servable:
        # A batch job sends big requests one after another: no queue, no batching servable;
        # each call runs on the pool (the runtime uses its own threads inside a call).
        return ThreadPoolServable(predictor, self._pool, CallLimits(max_concurrency=self._threads))

    def open(self) -> BatchModel:
        """Load the model (and, for a composite, its steps); raises ``ModelLoadError`` with
        the reason, or ``BatchInputError`` for a folder that is not a model."""
        self._loaded = True  # from here on, close() stops what start() started
        try:
            self._loop.run_until_complete(self._open())
        except BaseException:
            self.close()
            raise
        return self

    async def _open(self) -> None:
        await self._manager.start()
        override = None
        if self._version is not None:
            override = self._pinned(self._version)
        try:
            await self._manager.load(self.name, override)
        except ModelNotFoundError as exc:
            raise BatchInputError(
                f"{str(self.folder)!r} is not a model folder (no version folder, no "
                f"model.yaml): {exc}"
            ) from exc
        versions = sorted(self._manager.serving_versions(self.name))
        self.served_version = versions[-1] if self._version is None else self._version
        self.spec = self._manager.spec(self.name)
        handle = self._dataplane.lease(self._request([]))
        try:
            self.metadata = handle.metadata
        finally:
            handle.release()

    def _pinned(self, version: int) -> LoadOverride:
        """The folder's own model.yaml with a version policy serving just ``version``."""
        scanned = FileSystemSource(self.folder.parent).scan_model(self.name)
        if scanned is None:
            raise BatchInputError(f"{str(self.folder)!r} is not a model folder")
        if scanned.versions and version not in scanned.versions:
            found = ", ".join(str(v) for v in sorted(scanned.versions)) or "none"
            raise BatchInputError(
                f"--version {version}: model {self.name!r} has no version {version} "
                f"(versions found: {found})"
            )
        spec = scanned.spec if scanned.spec is not None else ModelSpec()
        policy = VersionPolicySpec(kind="specific", versions=(version,))
        return LoadOverride(spec.model_copy(update={"version_policy": policy}), frozenset())

    def _request(self, inputs: list[Tensor]) -> InferenceRequest:
        version = None if self._version is None else str(self.served_version)
        return InferenceRequest(self.name, inputs, model_version=version)

    def infer(self, inputs: Sequence[Tensor]) -> InferenceResponse:
        """The model's answer to one batch of rows, through the data plane."""
        return self._loop.run_until_complete(self._dataplane.infer(self._request(list(inputs))))

    def close(self) -> None:
        if self._loaded:
            self._loop.run_until_complete(self._close())
        self._loop.close()
        self._pool.shutdown(wait=False)
        self._load_pool.shutdown(wait=False)

    async def _close(self) -> None:
        await self._dataplane.close()
        await self._manager.stop()

    def __enter__(self) -> BatchModel:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _layer_plan(spec: ModelSpec, provider: ServableProvider) -> Sequence[Layer]:
    """The server's layer plan for what batch scoring runs: the keys layer for a keyed model
    (the same as ``serval.app.layer_plan``)."""
    return (keys_layer,) if spec.keys else ()
