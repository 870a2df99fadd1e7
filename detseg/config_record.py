"""Which config keys reach the code: an opt-in record of the keys handed to constructors.

While :func:`record_consumed_keys` is active, :func:`detseg.config.build` notes the keys of
each component node it passes to a builder and :func:`detseg.config.build_section` the
fields of each section it turns into a dataclass, by config path (``model.backbone.depth``,
``data.train.batch_size``). ``tests/test_config_keys.py`` checks with it that every key of
every experiment is used, not just validated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

_RECORDS: list[set[str]] = []


@contextmanager
def record_consumed_keys() -> Iterator[set[str]]:
    """Collect the config paths of the keys handed to constructors while the block runs."""
    record: set[str] = set()
    _RECORDS.append(record)
    try:
        yield record
    finally:
        _RECORDS.remove(record)


def note_consumed(path: str, keys: Iterable[str]) -> None:
    """Note that ``keys`` of the node at ``path`` were handed to a constructor."""
    if _RECORDS:
        paths = {f"{path}.{key}" if path else str(key) for key in keys}
        for record in _RECORDS:
            record.update(paths)
