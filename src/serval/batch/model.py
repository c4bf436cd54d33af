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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from serval import __version__
from serval.batch.errors import BatchInputError
from serval.core.composition.composite import CompositeServables
from serval.core.composition.keys import keys_plan
from serval.core.composition.layers import Composition, Layer
from serval.core.composition.provider import ServableProvider
from serval.core.dataplane import DataPlane, ServerMetadata
from serval.core.errors import ModelNotFoundError, ServalError
from serval.core.events import EventBus
from serval.core.lifecycle.loader import LoadRequest
from serval.core.lifecycle.manager import LifecycleManager, ManagerOptions
from serval.core.lifecycle.options import ControlMode
from serval.core.lifecycle.source import FileSystemSource, ModelSource, Source
from serval.core.lifecycle.states import ServableId
from serval.core.model_spec import ModelSpec, VersionPolicySpec
from serval.core.servable import CallLimits, Predictor, Servable, ThreadPoolServable
from serval.core.types import InferenceRequest, InferenceResponse, ServableMetadata, Tensor
from serval.runtimes.registry import RuntimeRegistry

# The runtime option that sets a model's threads, for ``--threads`` (runtimes without one keep
# their model.yaml's behaviour).
RUNTIME_THREADS = {"onnx": "intra_op_threads", "xgboost": "nthread", "lightgbm": "num_threads"}


class BatchModel:
    """``folder`` (``repo/name``) loaded at ``version`` (None: what its version policy serves,
    the highest). ``threads`` replaces the runtime's threads option (``RUNTIME_THREADS``) of
    model.yaml; None keeps it. Calls come one at a time: the runtime's threads work inside
    each."""

    def __init__(
        self, folder: Path, version: int | None = None, threads: int | None = None
    ) -> None:
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise BatchInputError(f"model folder {str(folder)!r} does not exist")
        self.folder = folder
        self.name = folder.name
        self._version = version
        self._threads = threads
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="serval-batch")
        self._load_pool = ThreadPoolExecutor(2, thread_name_prefix="serval-batch-load")
        source = BatchSource(FileSystemSource(folder.parent), self.name, version, threads)
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
        return ThreadPoolServable(predictor, self._pool, CallLimits(max_concurrency=1))

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
        try:
            await self._manager.load(self.name)
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


class BatchSource:
    """The repository as ``inner`` reads it, but the scored model's spec serves just
    ``version`` (when given) with its runtime's threads set to ``threads`` (when given): the
    job's choices, applied where the server reads model.yaml, so everything else is the
    folder's own. Other models (a composite's steps) are as they are."""

    def __init__(self, inner: Source, name: str, version: int | None, threads: int | None) -> None:
        self._inner = inner
        self._name = name
        self._version = version
        self._threads = threads

    def scan(self) -> dict[str, ModelSource]:
        return {name: self._adjusted(source) for name, source in self._inner.scan().items()}

    def scan_model(self, name: str) -> ModelSource | None:
        source = self._inner.scan_model(name)
        return None if source is None else self._adjusted(source)

    def _adjusted(self, source: ModelSource) -> ModelSource:
        if source.name != self._name or source.spec is None:
            return source  # another model, or a model.yaml error the load reports
        spec = source.spec
        version = self._version
        if version is not None:
            if version not in source.versions and spec.composite is None:
                found = ", ".join(str(v) for v in sorted(source.versions)) or "none"
                raise BatchInputError(
                    f"--version {version}: model {self._name!r} has no version {version} "
                    f"(versions found: {found})"
                )
            policy = VersionPolicySpec(kind="specific", versions=(version,))
            spec = spec.model_copy(update={"version_policy": policy})
        if self._threads is not None and source.versions:
            folder = source.versions[version if version is not None else max(source.versions)]
            spec = with_threads(spec, self._name, folder.path, self._threads)
        return replace(source, spec=spec)


def with_threads(spec: ModelSpec, name: str, version_folder: Path, threads: int) -> ModelSpec:
    """``spec`` with its runtime's threads option set to ``threads`` (unchanged for a runtime
    without one, or a composite)."""
    if spec.composite is not None:
        return spec
    try:
        runtime = RuntimeRegistry.default().choose(LoadRequest(name, 0, version_folder, spec))
    except ServalError:
        return spec  # the load reports it
    option = RUNTIME_THREADS.get(runtime.name)
    if option is None:
        return spec
    options = {**spec.runtime_options, option: threads}
    return spec.model_copy(update={"runtime_options": options})


def _layer_plan(spec: ModelSpec, provider: ServableProvider, id: ServableId) -> Sequence[Layer]:
    """What the server's layer plan has for batch scoring: the keys layer of a keyed model."""
    return keys_plan(spec)
