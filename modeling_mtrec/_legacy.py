"""Module paths of the flat layout before issue 8 (e.g. `modeling_mtrec.inference`), kept importable.

Each old path is served, on first import, as a module holding the public names of the modules its code moved to,
with a `DeprecationWarning` naming them. This keeps code written against the old paths working, and objects
pickled under them (e.g. a Trainer checkpoint's ``training_args.bin`` pickles `modeling_mtrec.trainer.
MTRecTrainingArguments`) loadable. New code imports from the new paths (README, "Where things live").
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

# old module path -> the modules (relative to the package) whose public names it held
MOVED: dict[str, tuple[str, ...]] = {
    "configuration_mtrec": ("models.mtrec.configuration_mtrec",),
    "modeling_mtrec": ("models.mtrec.modeling_mtrec",),
    "configuration_two_tower": ("models.two_tower.configuration_two_tower",),
    "modeling_two_tower": ("models.two_tower.modeling_two_tower",),
    "trainer": ("training.mtrec", "training.surgery", "training.running_means", "evaluation.metrics"),
    "trainer_two_tower": ("training.two_tower",),
    "inference": ("serving.cache", "evaluation.fast", "evaluation.leaderboard", "serving.recommender"),
    "metrics": ("evaluation.metrics",),
    "retrieval": ("serving.retrieval", "evaluation.retrieval"),
    "data.collator": ("models.mtrec.collator",),
    "data.tokenization": ("models.mtrec.processing_mtrec",),
    "data.two_tower": ("models.two_tower.features", "models.two_tower.collator", "data.samples", "data.corpus"),
}
_PACKAGE = __name__.rpartition(".")[0]


def _public_names(module: ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    return list(names) if names is not None else [n for n in vars(module) if not n.startswith("_")]


class LegacyModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old module paths (after every other finder has failed) and fills them from the new modules."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(_PACKAGE + ".") and fullname[len(_PACKAGE) + 1 :] in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        targets = [f"{_PACKAGE}.{name}" for name in MOVED[module.__name__[len(_PACKAGE) + 1 :]]]
        warnings.warn(
            f"{module.__name__} is an old module path; import from {', '.join(targets)} instead",
            DeprecationWarning,
            stacklevel=2,
        )
        names: dict[str, object] = {}
        for target in targets:
            new = importlib.import_module(target)
            for name in _public_names(new):
                names.setdefault(name, getattr(new, name))  # the first module listed wins a name two of them share
        vars(module).update(names)
        module.__all__ = list(names)


def install() -> None:
    """Appends the finder to `sys.meta_path` once (last: the real modules always win)."""
    if not any(isinstance(finder, LegacyModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(LegacyModuleFinder())
