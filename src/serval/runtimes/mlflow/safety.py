"""What an MLflow model may run when loaded, checked before MLflow loads it.

Loading a pickle runs any code it holds (docs/runtimes/pickle-safety.md): an MLflow model that
holds one (``python_model.pkl`` of a pickled ``PythonModel``, a cloudpickled scikit-learn
model, a ``torch.save`` file) loads only when ``model.yaml`` trusts pickles. A skops file loads
only the types skops trusts plus those ``model.yaml`` lists: the ``skops_trusted_types`` the
``MLmodel`` file carries are the model author's word, not the operator's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from serval.core.errors import ModelConfigError
from serval.runtimes.mlflow.mlmodel import MLmodel

# Files MLflow's flavors write with pickle (or cloudpickle, joblib, torch.save).
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".cloudpickle", ".joblib", ".pth"})


def pickles_in(folder: Path) -> list[Path]:
    """The pickle files under ``folder``, relative to it, sorted."""
    found = (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    return sorted(p.relative_to(folder) for p in found)


def check_pickles(model: MLmodel, trust_pickle: bool, spec_file: str) -> list[Path]:
    """The pickles the model holds; ``ModelConfigError`` when there are some, untrusted."""
    found = pickles_in(model.folder)
    if found and not trust_pickle:
        names = ", ".join(str(p) for p in found)
        raise ModelConfigError(
            f"refusing to load the MLflow model in {model.folder}: it holds pickles ({names}), "
            f"and loading a pickle runs any code it contains. Log the model without pickles "
            f"(scikit-learn: serialization_format='skops'; a PythonModel: models from code), "
            f"or, if you trust these files, set runtime_options.trust_pickle: true in "
            f"{spec_file} (see docs/runtimes/pickle-safety.md)"
        )
    return found


def check_skops_types(model: MLmodel, trusted: Iterable[str], spec_file: str) -> None:
    """``ModelConfigError`` when a flavor asks skops to trust types ``model.yaml`` does not."""
    allowed = set(trusted)
    for name, flavor in model.flavors.items():
        asked = flavor.get("skops_trusted_types") or []
        refused = [str(t) for t in asked if str(t) not in allowed]
        if refused:
            raise ModelConfigError(
                f"the MLmodel's {name} flavor asks skops to trust {', '.join(refused)}; if you "
                f"trust this file, list them in {spec_file} under runtime_options.trusted_types"
            )
