"""The instance-type catalogue of the offline validation (instance_catalogue.json: moto's EC2 data, its
version and date), and how a name it does not know is judged. Standard library only: it runs in the
ParallelCluster venv (imported by account.py) and in the app's.

EC2 launches instance types after any catalogue is made, so a name the catalogue lacks is not rejected when it
could be a real type: a new size of a family of the newest generation of its series (``c8gn.64xlarge``), or a
family of the newest or a newer generation (``c9i.large``, ``p6e-gb200.36xlarge``). Anything else (an unknown
size word such as ``18xlarg``, an unknown family of an older generation such as ``c5m``) is a typo, and
ParallelCluster's own error gets the closest real names.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any, Iterable

RECORD = Path(__file__).with_name("instance_catalogue.json")
NAME = re.compile(r"^(?P<family>(?P<series>[a-z]+)(?P<generation>\d+)(?P<attributes>[a-z0-9-]*))\.(?P<size>[a-z0-9-]+)$")
SIZE = re.compile(r"^(nano|micro|small|medium|large|\d*xlarge|metal(-\d+xl)?)$")


def record() -> dict[str, Any]:
    return json.loads(RECORD.read_text())


def _parts(name: str) -> re.Match[str] | None:
    return NAME.match(name)


def newest_generation(known: Iterable[str]) -> dict[str, int]:
    """Series (``c``, ``hpc``, ``p``) -> the newest generation the catalogue has."""
    newest: dict[str, int] = {}
    for name in known:
        parts = _parts(name)
        if parts:
            series, generation = parts["series"], int(parts["generation"])
            newest[series] = max(newest.get(series, 0), generation)
    return newest


def plausible_new_type(name: str, known: Iterable[str]) -> bool:
    """Whether ``name``, absent from the catalogue, may be a type EC2 launched after it was made."""
    known = set(known)
    parts = _parts(name)
    if name in known or parts is None:
        return False
    sizes = {p["size"] for p in map(_parts, known) if p}
    families = {p["family"] for p in map(_parts, known) if p}
    if parts["size"] not in sizes and not SIZE.match(parts["size"]):
        return False
    newest = newest_generation(known).get(parts["series"])
    if newest is None:
        return True  # a series the catalogue has never seen
    if parts["family"] in families:
        return int(parts["generation"]) >= newest  # a new size of a current family
    return int(parts["generation"]) >= newest


def architecture(name: str) -> str:
    """EC2's naming: a ``g`` among a family's attributes is Graviton (or Grace: ``p6e-gb200``), arm64."""
    parts = _parts(name)
    return "arm64" if parts and "g" in parts["attributes"] else "x86_64"


def relative(name: str, known: dict[str, Any]) -> str:
    """The catalogue's type a plausible new one is simulated like: of the architecture its name says, the same
    family's closest size if any, else the closest name."""
    arch = architecture(name)
    known = sorted(k for k, v in known.items() if arch in v.get("ProcessorInfo", {}).get("SupportedArchitectures", []))
    parts = _parts(name)
    same_family = [k for k in known if parts and k.startswith(parts["family"] + ".")]
    if same_family:
        return max(same_family, key=lambda k: (difflib.SequenceMatcher(None, k, name).ratio(), k))
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.0)
    return close[0] if close else "c5.large"


def closest(name: str, known: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
