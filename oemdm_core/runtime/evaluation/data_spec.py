"""The `--data` specs of zero-shot evaluation: which dataset, which split.

- `NAME` or `NAME:{OPTIONS}`: any registered dataset, options as a YAML mapping, e.g.
  `pydoc`, `text-files:{paths: [a.txt, b.txt], test: 0.1}`, `hf:{path: ./saved}`;
- `PATH`: a text file (plain, .gz, .xz) or a Parquet / Arrow / JSON-lines file, evaluated
  whole, or a directory written by `datasets`' `save_to_disk`;
- an optional `@SPLIT` suffix: train, validation, test, or all (the three concatenated).
  Default: the checkpoint's evaluation split for named datasets and saved DatasetDicts, all
  for files.

`parse_data_spec` reads a spec and opens its data, so a bad spec fails before any
evaluation starts.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import yaml

from oemdm_core.errors import ConfigError
from oemdm_core.interfaces.data import SPLITS, Dataset
from oemdm_core.plugin.registry import Registry, resolve_registry

SPLIT_CHOICES = (*SPLITS, "all")
TABULAR = (".parquet", ".arrow", ".jsonl", ".json")


@dataclass
class DataSpec:
    """A parsed `--data` spec: the label the user gave, the dataset and the split."""

    label: str
    dataset: Dataset
    split: str  # one of SPLIT_CHOICES: the dataset's split that is read
    whole: bool = False  # the split holds the whole data (a file, a single saved Dataset)

    @property
    def shown_split(self) -> str:
        return "all" if self.whole else self.split

    def texts(self) -> list[str]:
        """The documents of the split (all: the three splits, in order)."""
        if self.split == "all":
            return [t for s in SPLITS for t in self.dataset.texts(s)]
        return self.dataset.texts(self.split)


def spec_error(spec: str, why: str) -> ConfigError:
    """The one-line error of a bad `--data` spec."""
    return ConfigError(f"--data {spec!r}: {why}")


def parse_data_spec(
    spec: str, registry: Registry | None = None, default_split: str = "validation"
) -> DataSpec:
    """Resolve one `--data` spec (see module) and check that its data can be read, so a bad
    spec fails before any evaluation starts."""
    registry = resolve_registry(registry)
    text, split = spec, None
    head, sep, tail = spec.rpartition("@")
    if Path(spec).expanduser().exists():
        pass  # a path that contains '@'
    elif sep and tail in SPLIT_CHOICES:
        text, split = head, tail
    elif sep and head and "/" not in tail and ":" not in tail:
        raise spec_error(spec, f"unknown split {tail!r}; valid splits: {', '.join(SPLIT_CHOICES)}")
    names = registry.available("dataset")
    name, _, raw = text.partition(":")
    if name in names:
        options = {}
        if raw.strip():
            try:
                options = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise spec_error(spec, f"options are not valid YAML ({exc.problem})") from None
            if not isinstance(options, dict):
                raise spec_error(
                    spec, "options after ':' must be a mapping, e.g. text-files:{paths: [a.txt]}"
                )
        dataset = registry.build("dataset", name, **options)
        resolved = DataSpec(spec, dataset, split or default_split)
    else:
        resolved = _path_spec(spec, text, split, registry, default_split, names)
    try:
        resolved.dataset.fingerprint()  # opens the files: missing or unreadable data fail here
    except (FileNotFoundError, ValueError) as exc:
        raise spec_error(spec, str(exc)) from None
    return resolved


def _path_spec(
    spec: str,
    text: str,
    split: str | None,
    registry: Registry,
    default_split: str,
    names: list[str],
) -> DataSpec:
    """A spec that names a file or a saved `datasets` directory."""
    path = Path(text).expanduser()
    if not path.exists() and not glob.has_magic(text):
        raise spec_error(
            spec,
            f"no such file or directory, and not a registered dataset (datasets: "
            f"{', '.join(names)}; a file, a saved `datasets` directory, or NAME:{{options}})",
        )
    if path.is_dir() and (path / "dataset_dict.json").exists():
        dataset = registry.build("dataset", "hf", path=str(path))
        return DataSpec(spec, dataset, split or default_split)
    if path.is_dir() and not (path / "state.json").exists():
        raise spec_error(
            spec,
            "a directory must be written by `datasets` save_to_disk (dataset_dict.json or "
            "state.json); for text files use text-files:{paths: [DIR/*.txt]}",
        )
    if split not in (None, "all"):
        raise spec_error(
            spec,
            f"a file or a single saved Dataset is evaluated whole (@all), got @{split}; to "
            "split one use text-files:{paths: [FILE], test: 0.1} or hf:{path: …, splits: …}",
        )
    if path.is_dir():  # one saved Dataset: the same data for every split
        whole = {s: "train" for s in SPLITS}
        dataset = registry.build("dataset", "hf", path=str(path), splits=whole)
        return DataSpec(spec, dataset, "train", whole=True)
    if path.suffix in TABULAR:
        dataset = registry.build("dataset", "hf", path=text, splits={"train": "train"})
        return DataSpec(spec, dataset, "train", whole=True)  # data_files: the 'train' split
    dataset = registry.build("dataset", "text-files", paths=[text], validation=0.0, test=0.0)
    return DataSpec(spec, dataset, "train", whole=True)  # no held-out fractions: the whole file
