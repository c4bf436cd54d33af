"""``runtime_options`` of a PyTorch model (without importing torch: the model.yaml schema is
generated from it where torch is not installed)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TorchOptions(BaseModel):
    """``runtime_options`` of a PyTorch model in ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trust_pickle: bool = Field(
        default=False,
        description="Load a torch.save pickle (model.pt / model.pth holding an nn.Module), or "
        "a model.pt2 archive with pickled parts. A pickle runs arbitrary code when loaded: set "
        "this only for files you produced or otherwise trust.",
    )
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="torch's intra-op threads (one value for the whole process: the smallest "
        "any loaded torch model sets). 0: the cores divided by the calls of this model that may "
        "run at once (1 on the shared inference threads; all cores for one batching instance).",
    )
