"""Text from users and files that gaussrender does not trust: bounded YAML and brief echoes.

* :func:`load_yaml` parses one YAML document (a config file or a ``--set`` value) with a
  loader that counts, while it composes the node graph and before it builds any Python
  object, how many values the document expands to (aliases counted at every use) and how
  deep it nests. A 369-byte "billion laughs" of nested aliases, a recursive anchor or
  ``[[[[...]]]]`` nested 100 000 deep is refused in milliseconds, by name, instead of
  expanding to gigabytes or overflowing the stack.
* :func:`brief` is the only way an error message shows a value it refuses: at most a short
  prefix, whatever the value's size (a 4 GB string, a 10 000-digit integer, a list of a
  million items, a cyclic structure).
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = [
    "BRIEF_CHARS",
    "MAX_YAML_NODES",
    "MAX_YAML_DEPTH",
    "MAX_ZIP_MEMBERS",
    "YamlLimitError",
    "ArchiveLimitError",
    "brief",
    "load_yaml",
    "zip_inflated_size",
]

#: Longest echo of a refused value in an error message, characters.
BRIEF_CHARS = 80
#: Values one YAML document may expand to (each alias counted where it is used). A config
#: has about 150; 10 000 leaves room for long lists (class weights, camera odds) and refuses
#: a 1 MiB file of scalars after composing 10 000 of them (~0.2 s), not after all of them.
MAX_YAML_NODES = 10_000
#: Nesting depth of one YAML document. Configs nest 3 deep (section.key.list).
MAX_YAML_DEPTH = 32


def brief(value: Any, limit: int = BRIEF_CHARS) -> str:
    """A repr of ``value`` of at most ``limit`` characters (then ``...`` and its size).

    Never builds the full repr of a large value: containers show their first items,
    integers beyond 50 digits their digit count, strings their first characters.
    """
    out: list[str] = []
    _brief_into(value, out, [limit + 1], 0)
    text = "".join(out)
    if len(text) <= limit:
        return text
    size = _size_of(value)
    return text[:limit] + "..." + (f" ({size})" if size else "")


def _size_of(value: Any) -> str:
    if isinstance(value, (str, bytes)):
        return f"{len(value)} characters" if isinstance(value, str) else f"{len(value)} bytes"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"{len(value)} items"
    return ""


def _brief_into(value: Any, out: list[str], budget: list[int], depth: int) -> None:
    """Append a repr of ``value`` to ``out`` until ``budget[0]`` characters are spent."""
    if budget[0] <= 0:
        return

    def put(text: str) -> None:
        out.append(text[: max(budget[0], 0)])
        budget[0] -= len(text)

    if isinstance(value, bool) or value is None or isinstance(value, float):
        put(repr(value))
    elif isinstance(value, int):
        if value.bit_length() > 160:  # repr of a 5000-digit int raises ValueError (and is long)
            put(f"<integer of {value.bit_length()} bits>")
        else:
            put(repr(value))
    elif isinstance(value, (str, bytes)):
        put(repr(value[: budget[0] + 2]))
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        if depth >= 4:
            put("[...]" if isinstance(value, list) else "{...}" if isinstance(value, dict) else "(...)")
            return
        brackets = {list: "[]", tuple: "()", dict: "{}"}.get(type(value), "{}")
        put(brackets[0])
        items = value.items() if isinstance(value, dict) else value
        for i, item in enumerate(items):
            if budget[0] <= 0:
                return
            if i:
                put(", ")
            if isinstance(value, dict):
                _brief_into(item[0], out, budget, depth + 1)
                put(": ")
                _brief_into(item[1], out, budget, depth + 1)
            else:
                _brief_into(item, out, budget, depth + 1)
        put(brackets[1])
    else:
        put(f"<{type(value).__name__}>")


#: Entries of a zip (a ``torch.save`` file) whose directory is read: one per tensor storage
#: plus a few (a model of 1000 tensors with AdamW has ~3000).
MAX_ZIP_MEMBERS = 100_000
_MAX_ZIP_DIRECTORY = 64 << 20  # bytes of the central directory, which zipfile reads whole


class ArchiveLimitError(ValueError):
    """A zip whose directory is unreadable or too large to read."""


def zip_inflated_size(path: Any) -> tuple[int, int]:
    """``(members, total declared uncompressed bytes)`` of the zip at ``path``, from its
    directory only (no member is read). ``torch.load`` allocates each member at its declared
    size, so this bounds what loading the file can allocate.

    Raises:
        ArchiveLimitError: not a zip, a corrupt directory, or more than
            :data:`MAX_ZIP_MEMBERS` entries / 64 MiB of directory.
    """
    import zipfile

    try:
        with open(path, "rb") as f:
            end = zipfile._EndRecData(f)  # type: ignore[attr-defined]  # the directory's size, from its end record
    except OSError as err:
        raise ArchiveLimitError(f"cannot read ({err.strerror or err})") from None
    if end is None:
        raise ArchiveLimitError("not a zip archive (as torch.save writes)")
    entries = end[zipfile._ECD_ENTRIES_TOTAL]  # type: ignore[attr-defined]
    directory = end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > MAX_ZIP_MEMBERS or directory > _MAX_ZIP_DIRECTORY:
        raise ArchiveLimitError(
            f"{entries} zip entries ({directory} directory bytes); at most {MAX_ZIP_MEMBERS} are read"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as err:
        raise ArchiveLimitError(f"{type(err).__name__}: {err}") from None
    return len(members), sum(m.file_size for m in members)


class YamlLimitError(ValueError):
    """A YAML document that expands to too many values, nests too deeply, recurses through
    an anchor or holds a value Python refuses to build (an integer of over 4300 digits)."""


class _CountingLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that measures the node graph while composing it.

    Every composed node gets its *expanded* size (itself plus its children, an alias counted
    with the full size of the node it names) and depth; both are checked as soon as a node is
    finished, so an expansion is refused before it is built. Composition recursion is
    bounded by the depth limit, so deep nesting never reaches Python's recursion limit.
    """

    def __init__(self, stream: str, max_nodes: int, max_depth: int) -> None:
        super().__init__(stream)
        self._max_nodes = max_nodes
        self._max_depth = max_depth
        self._depth = 0
        self._composed = 0
        self._measure: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, depth)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None and id(node) not in self._measure:
                raise YamlLimitError(
                    f"expands to more than {self._max_nodes} values (the alias *{brief(event.anchor, 40)} is "
                    "inside its own anchor: a recursive value)"
                )
            node = super().compose_node(parent, index)
            self._check(*self._measure[id(node)])
            return node
        self._depth += 1
        self._composed += 1
        if self._composed > self._max_nodes:
            raise YamlLimitError(f"expands to more than {self._max_nodes} values")
        if self._depth > self._max_depth:
            raise YamlLimitError(f"nests deeper than {self._max_depth} levels")
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.ScalarNode):
            measure = (1, 1)
        else:
            children = (
                [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
            )
            sizes = [self._measure[id(c)] for c in children]
            measure = (1 + sum(s for s, _ in sizes), 1 + max((d for _, d in sizes), default=0))
        self._measure[id(node)] = measure
        self._check(*measure)
        return node

    def _check(self, size: int, depth: int) -> None:
        if size > self._max_nodes:
            raise YamlLimitError(
                f"expands to more than {self._max_nodes} values (repeated or nested anchors and aliases?)"
            )
        if depth + self._depth > self._max_depth:
            raise YamlLimitError(f"nests deeper than {self._max_depth} levels (through aliases)")


def load_yaml(text: str, max_nodes: int = MAX_YAML_NODES, max_depth: int = MAX_YAML_DEPTH) -> Any:
    """Parse one YAML document safely (``yaml.safe_load``'s types) within the limits.

    Raises:
        YamlLimitError: the document expands to more than ``max_nodes`` values, nests deeper
            than ``max_depth`` (aliases included), has an alias inside its own anchor, or holds
            a value Python will not build (an integer of more than 4300 digits).
        yaml.YAMLError: not valid YAML.
    """
    loader = _CountingLoader(text, max_nodes, max_depth)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return loader.construct_document(node)
        except (ValueError, OverflowError, RecursionError) as err:
            # int("9" * 5000) and the like: Python's own limits
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise YamlLimitError(f"holds a value that cannot be built ({brief(message, 120)})") from None
    except RecursionError:
        raise YamlLimitError(f"nests deeper than {max_depth} levels") from None
    finally:
        loader.dispose()
