"""Data: the generated corpus, pretraining pair datasets, evaluation sets, registry and checks.

Public API (see docs/architecture.md):
``build_pair_datasets(cfg, seed=0) -> (train, val)``, ``PairCollator(tokenizer, max_length)``,
``registry.DATASETS``, ``get_dataset(name, cfg, split)``, ``check_datasets(cfg)``,
``DatasetMissing``, ``ClassificationSet``, ``CaptionSet``, ``corpus_stats``.
Modules: ``synthetic`` (generator), ``augment``, ``images`` (safe decoding), ``checks``
(manifest validation), ``formats`` (on-disk readers), ``sets`` (evaluation sets),
``registry``, ``pairs``, ``collate``, ``prepare`` and ``cli`` (``python -m contextclip data``).
"""

from contextclip.data.collate import PairCollator
from contextclip.data.pairs import PairDataset, build_pair_datasets
from contextclip.data.registry import DATASETS, check_datasets, get_dataset, missing_message, resolve_root
from contextclip.data.sets import CaptionSet, ClassificationSet, DatasetMissing
from contextclip.data.synthetic import corpus_stats

__all__ = [
    "DATASETS", "CaptionSet", "ClassificationSet", "DatasetMissing", "PairCollator", "PairDataset",
    "build_pair_datasets", "check_datasets", "corpus_stats", "get_dataset", "missing_message", "resolve_root",
]
