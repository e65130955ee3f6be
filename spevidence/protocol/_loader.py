"""Read a protocol file into plain Python values, refusing what YAML allows but a
protocol must not hold (issue 19).

- aliases (``*name``; also ``<<: *name`` merges): a few lines of them expand to
  gigabytes (the "billion laughs"), and a protocol is short enough to write out;
- duplicate keys: YAML keeps the last silently, so a reviewer reading the first is misled;
- nesting deeper than :data:`MAX_DEPTH`, and files over :data:`MAX_BYTES`;
- implicit timestamps: dates stay text for the model to parse, so an impossible date
  (2023-02-30) is a field error rather than a Python ``ValueError``.

Every refusal is a :class:`~spevidence.errors.ProtocolError` naming the line and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node

from spevidence.errors import ProtocolError

MAX_BYTES = 1_000_000  # a protocol is a page or two of YAML
MAX_DEPTH = 20  # the model itself nests three levels

_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases, duplicate keys, deep nesting or timestamps."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's class-level table, copied
        ch: [(tag, rx) for tag, rx in rs if tag != _TIMESTAMP]
        for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ProtocolError(
                f"line {mark.line + 1}: YAML aliases (*name) are not accepted in a protocol "
                "(a few lines of them can expand to gigabytes); write the values out in full "
                "and remove the anchors (&name)."
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise ProtocolError(
                f"line {mark.line + 1}: the protocol is nested more than {MAX_DEPTH} levels "
                "deep; a protocol's fields nest at most three levels (see 'spevidence init')."
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable: the base class reports it
            if key in seen:
                raise ProtocolError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {str(key)!r} (YAML "
                    "would keep only the last value silently); give each field once."
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path`` as plain Python values (see the module docstring)."""
    where = str(path)
    if not path.is_file():
        raise ProtocolError(
            f"Protocol file {where} not found. Give the path to a protocol YAML "
            "(see protocols/ for examples, or write one with 'spevidence init')."
        )
    if path.stat().st_size > MAX_BYTES:
        raise ProtocolError(
            f"Protocol file {where} is larger than 1 MB ({path.stat().st_size:,} bytes); a "
            "protocol is a page or two of YAML. Check that this is the right file."
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(
            f"Protocol file {where} is not a text file in UTF-8; give the protocol YAML "
            "(save it as UTF-8 text)."
        ) from None
    try:
        return yaml.load(text, Loader=_Loader)
    except ProtocolError as exc:
        raise ProtocolError(f"Protocol file {where}, {exc}") from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        # a YAML syntax error, or an explicitly tagged value that cannot be built
        raise ProtocolError(f"Protocol file {where} is not valid YAML: {exc}") from None
