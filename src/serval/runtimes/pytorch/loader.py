"""Loads ``model.pt2`` (``torch.export``), ``model.pt`` (TorchScript, Triton's name) or, when
``runtime_options.trust_pickle`` says so, a pickled ``nn.Module`` (``model.pt`` / ``model.pth``
saved with ``torch.save``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils import _pytree as pytree

from serval.core.errors import ModelConfigError, ModelLoadError
from serval.core.lifecycle.loader import LoadRequest
from serval.core.types import ServableMetadata
from serval.runtimes.options import parse_runtime_options, spec_file
from serval.runtimes.pytorch.archive import (
    FileKind,
    file_kind,
    loads_weights_only,
    unsafe_parts,
)
from serval.runtimes.pytorch.options import TorchOptions
from serval.runtimes.pytorch.predictor import Forward, TorchPredictor
from serval.runtimes.pytorch.signature import check_arity, declared_specs, exported_specs
from serval.runtimes.pytorch.threads import (
    IntraOpThreads,
    Wish,
    available_cores,
    default_intra_op_threads,
)

logger = logging.getLogger(__name__)

FILES = ("model.pt2", "model.pt", "model.pth")  # in order of preference
PLATFORMS = {
    FileKind.TORCHSCRIPT: "pytorch_libtorch",  # Triton's platform name for TorchScript
    FileKind.EXPORTED: "torch_export",
    FileKind.PICKLE: "pytorch_pickle",
}
SAFETY_DOC = "docs/runtimes/pickle-safety.md"

# torch's intra-op thread count is one per process (torch.set_num_threads), so its bookkeeping
# is too: every torch model loaded in this process shares it.
PROCESS_THREADS = IntraOpThreads(torch.set_num_threads)
# torch.export.load keeps its deserializer in a module global ("_CURRENT_DESERIALIZER is
# already set" when two load at once): serval's load threads take turns reading torch files.
_DESERIALIZING = threading.Lock()
# torch.jit.load has no annotations (mypy's strict mode refuses the call as it is).
_jit_load: Callable[..., Any] = torch.jit.load


class TorchLoader:
    def __init__(self, request: LoadRequest, threads: IntraOpThreads = PROCESS_THREADS) -> None:
        self._request = request
        self._source = spec_file(request)
        self._options = parse_runtime_options(TorchOptions, request)
        self._threads = threads

    def load(self) -> TorchPredictor:
        path = next(
            (self._request.path / n for n in FILES if (self._request.path / n).is_file()), None
        )
        if path is None:
            raise ModelLoadError(
                f"no PyTorch model in {self._request.path} (expected one of {', '.join(FILES)})"
            )
        kind = file_kind(path)
        if kind is FileKind.EXPORTED:
            model, forward, metadata = self._exported(path)
        else:
            if path.suffix == ".pt2":
                raise ModelLoadError(
                    f"{path.name} holds a {kind.value}, not a torch.export program"
                )
            model = self._torchscript(path) if kind is FileKind.TORCHSCRIPT else self._pickled(path)
            model.eval()
            inputs, outputs = declared_specs(self._request.spec, self._source, kind.value)
            check_arity(model, inputs, self._source)
            metadata = ServableMetadata(platform=PLATFORMS[kind], inputs=inputs, outputs=outputs)
            forward = _positional(model)
        owner = object()
        self._claim_threads(owner)
        predictor = TorchPredictor(forward, metadata, model, lambda: self._threads.release(owner))
        spec = self._request.spec
        if spec.warmup.enabled:
            try:
                predictor.warm_up(spec.warmup.batch_size, spec.warmup.iterations)
            except BaseException:
                predictor.close()
                raise
        return predictor

    def _claim_threads(self, owner: object) -> None:
        wanted = self._options.intra_op_threads
        wish = Wish(
            wanted or default_intra_op_threads(self._request.spec, available_cores()),
            explicit=wanted > 0,
        )
        self._threads.claim(owner, wish, self._request.name)

    def _exported(self, path: Path) -> tuple[Any, Forward, ServableMetadata]:
        unsafe = unsafe_parts(path)
        if unsafe and not self._options.trust_pickle:
            raise ModelConfigError(
                f"refusing to load {path.name}: loading it would unpickle or run more than "
                f"tensors ({'; '.join(unsafe)}), which can run any code. If you trust this "
                f"file, set runtime_options.trust_pickle: true in model.yaml (see {SAFETY_DOC})"
            )
        if unsafe:
            self._warn_trusted(path)
        try:
            with _DESERIALIZING:
                program = torch.export.load(path)
        except Exception as exc:
            raise ModelLoadError(
                f"{path.name} is not a readable torch.export program: {exc}"
            ) from exc
        inputs, outputs = exported_specs(program, self._request.spec, self._source)
        module = program.module()
        in_spec = program.call_spec.in_spec

        def forward(tensors: Sequence[torch.Tensor]) -> Any:
            if in_spec is None:
                return module(*tensors)
            args, kwargs = pytree.tree_unflatten(list(tensors), in_spec)
            return module(*args, **kwargs)

        return program, forward, ServableMetadata(PLATFORMS[FileKind.EXPORTED], inputs, outputs)

    def _torchscript(self, path: Path) -> Any:
        try:
            with _DESERIALIZING:
                return _jit_load(str(path), map_location="cpu")
        except Exception as exc:
            raise ModelLoadError(f"{path.name} is not a readable TorchScript file: {exc}") from exc

    def _pickled(self, path: Path) -> Any:
        if not self._options.trust_pickle:
            if loads_weights_only(path):
                raise ModelConfigError(
                    f"{path.name} holds only weights (a state_dict or tensors), not a model: "
                    f"save the module with torch.jit.script(model).save('model.pt') or "
                    f"torch.export.save(torch.export.export(model, example), 'model.pt2')"
                )
            raise ModelConfigError(
                f"refusing to load {path.name}: it is a torch.save pickle of Python objects, and "
                f"loading a pickle runs any code it contains. Save the model with torch.export "
                f"(model.pt2) or TorchScript (model.pt), or, if you trust this file, set "
                f"runtime_options.trust_pickle: true in model.yaml (see {SAFETY_DOC})"
            )
        self._warn_trusted(path)
        with _DESERIALIZING:
            model = torch.load(path, weights_only=False, map_location="cpu")
        if not isinstance(model, torch.nn.Module):
            raise ModelLoadError(f"{path.name} holds a {type(model).__name__}, not an nn.Module")
        return model

    def _warn_trusted(self, path: Path) -> None:
        # Only model.yaml can set it: a load request's override may not (core.load_override).
        logger.warning(
            "model %s version %d: loading %s with pickled parts because %s sets "
            "runtime_options.trust_pickle: true; a pickle can run arbitrary code",
            self._request.name,
            self._request.version,
            path,
            self._source,
        )


def _positional(module: Any) -> Forward:
    def forward(tensors: Sequence[torch.Tensor]) -> Any:
        return module(*tensors)

    return forward
