"""Transfer learning: start a model from weights another task trained.

Taught in notebooks/12_train_voc.

Two models of one architecture but different class counts (Pascal VOC's 21 classes, nuclei's
2) share most of their variables: the backbone, the FPN, the RPN head and the hidden layers of
the box and mask heads have the same shapes, only the class-dependent outputs differ (class
logits ``(D, K)``, box deltas ``(D, 4K)``, mask logits ``(…, K)``). :func:`transfer_weights`
copies every variable whose *path* (``layer/variable``, e.g. ``box_head/box_fc1/kernel``) and
*shape* match, leaves the others at their initial values, and reports what happened, part by
part. The same function starts a Mask R-CNN from an ImageNet ResNet (keras.applications names
its layers as :mod:`course_lib.layers.resnet` does): only the backbone matches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: Parts of a Mask R-CNN by variable path (first match wins): the backbone's layers carry no
#: prefix (``conv1_conv/kernel``, ``conv4_block3_2_bn/gamma``), so it takes what is left.
MASKRCNN_PARTS: tuple[tuple[str, str], ...] = (
    ("fpn", r"^fpn_"),
    ("rpn", r"^rpn_head/"),
    ("box_head", r"^box_head/"),
    ("mask_head", r"^mask_head/"),
    ("backbone", r".*"),
)

COPIED, SHAPE, ABSENT = "copied", "shape differs", "not in source"


@dataclass(frozen=True)
class TransferRow:
    """One target variable and what happened to it.

    Attributes:
        path: the variable's path in the target (``layer/variable``).
        part: its part (:data:`MASKRCNN_PARTS` or the ``parts`` given).
        status: ``"copied"``, ``"shape differs"`` or ``"not in source"``.
        shape: its shape in the target.
        source_shape: the shape of the source variable of that path (``None`` if none).

    Taught in notebooks/12_train_voc.
    """

    path: str
    part: str
    status: str
    shape: tuple
    source_shape: tuple | None = None

    @property
    def size(self) -> int:
        """Number of values (parameters) of the target variable."""
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class TransferReport:
    """What :func:`transfer_weights` copied and skipped.

    Attributes:
        rows: one :class:`TransferRow` per target variable, in the target's order.
        unused: source paths that no target variable took (e.g. ImageNet's classifier).
        parts: the part names in display order.

    Taught in notebooks/12_train_voc.
    """

    rows: list[TransferRow]
    unused: list[str] = field(default_factory=list)
    parts: tuple[str, ...] = ()

    @property
    def copied(self) -> list[TransferRow]:
        return [r for r in self.rows if r.status == COPIED]

    @property
    def skipped(self) -> list[TransferRow]:
        return [r for r in self.rows if r.status != COPIED]

    def by_part(self) -> dict[str, dict[str, int]]:
        """``{part: {"copied", "skipped", "copied_params", "params"}}`` (variables and values).

        Taught in notebooks/12_train_voc.
        """
        out = {p: {"copied": 0, "skipped": 0, "copied_params": 0, "params": 0}
               for p in self.parts}
        for r in self.rows:
            entry = out.setdefault(r.part, {"copied": 0, "skipped": 0, "copied_params": 0,
                                            "params": 0})
            entry["params"] += r.size
            if r.status == COPIED:
                entry["copied"] += 1
                entry["copied_params"] += r.size
            else:
                entry["skipped"] += 1
        return {p: v for p, v in out.items() if v["params"] or v["copied"] or v["skipped"]}

    def copied_fraction(self) -> float:
        """Share of the target's parameters (values, not variables) that were copied."""
        total = sum(r.size for r in self.rows)
        return sum(r.size for r in self.copied) / total if total else 0.0

    def __str__(self) -> str:
        lines = [f"{'part':<10} {'variables copied':>16} {'skipped':>8} "
                 f"{'parameters copied':>20}"]
        for part, v in self.by_part().items():
            lines.append(f"{part:<10} {v['copied']:>16d} {v['skipped']:>8d} "
                         f"{v['copied_params']:>11,d} of {v['params']:<9,d}")
        lines.append(f"{'total':<10} {len(self.copied):>16d} {len(self.skipped):>8d} "
                     f"{self.copied_fraction():>19.1%}")
        for r in self.skipped:
            why = (f"{r.source_shape} in the source, {r.shape} here" if r.status == SHAPE
                   else f"{r.status}, kept at its initial value")
            lines.append(f"  skipped {r.path}: {why}")
        if self.unused:
            lines.append(f"  {len(self.unused)} source variables not used, e.g. "
                         + ", ".join(self.unused[:3]))
        return "\n".join(lines)


def _part(path: str, parts: Sequence[tuple[str, str]]) -> str:
    for name, pattern in parts:
        if re.search(pattern, path):
            return name
    return "other"


def _named_values(source) -> list[tuple[str, object]]:
    """``(path, variable or array)`` of a model/layer's weights or of a ``{path: array}``."""
    if isinstance(source, Mapping):
        return [(str(k), v) for k, v in source.items()]
    if hasattr(source, "weights"):
        return [(v.path, v) for v in source.weights]
    raise TypeError(f"transfer_weights: expected a Keras model or layer, or a mapping of "
                    f"variable path -> array; got {type(source).__name__}")


def transfer_weights(source, target, parts: Sequence[tuple[str, str]] = MASKRCNN_PARTS
                     ) -> TransferReport:
    """Copy into ``target`` every variable of ``source`` with the same path and shape.

    Args:
        source: a built Keras model or layer (its ``weights``: trainable and not, e.g.
            BatchNorm's moving statistics), or a mapping ``{path: array}``.
        target: a built Keras model or layer; changed in place.
        parts: ``(part name, regular expression)`` pairs, searched in order in each path, to
            group the report (default: Mask R-CNN's backbone, fpn, rpn, box_head, mask_head).

    A path that occurs several times (two unnamed layers of one name) is matched occurrence by
    occurrence, in order. Variables left out keep their values (the target's initialisation).

    Returns:
        :class:`TransferReport`; ``print(report)`` gives the table by part and lists the
        skipped variables with both shapes.

    Taught in notebooks/12_train_voc.
    """
    by_path: dict[str, list] = {}
    for path, value in _named_values(source):
        by_path.setdefault(path, []).append(value)
    taken: dict[str, int] = {}
    rows = []
    for variable in target.weights:
        path, shape = variable.path, tuple(int(d) for d in variable.shape)
        part = _part(path, parts)
        k = taken.get(path, 0)
        candidates = by_path.get(path, [])
        if k >= len(candidates):
            rows.append(TransferRow(path, part, ABSENT, shape))
            continue
        taken[path] = k + 1
        value = candidates[k]
        source_shape = tuple(int(d) for d in np.shape(value))
        if source_shape != shape:
            rows.append(TransferRow(path, part, SHAPE, shape, source_shape))
            continue
        variable.assign(np.asarray(value).astype(variable.dtype))
        rows.append(TransferRow(path, part, COPIED, shape, source_shape))
    unused = [p for p, values in by_path.items() for _ in range(len(values) - taken.get(p, 0))]
    names = tuple(dict.fromkeys([name for name, _ in parts]))
    return TransferReport(rows, unused, names)


def imagenet_backbone(depth: int = 50):
    """keras.applications' ResNet-``depth`` with the ImageNet weights found offline, or ``None``.

    Looks where :func:`course_lib.layers.resnet.find_imagenet_weights` looks (the Keras cache,
    ``~/.keras/models`` or ``$KERAS_HOME/models``); never downloads. Its layers carry the names
    of :func:`course_lib.layers.resnet.resnet`'s, so :func:`transfer_weights` copies it into a
    Mask R-CNN backbone of the same depth.

    Taught in notebooks/12_train_voc.
    """
    import keras

    from course_lib.layers.resnet import find_imagenet_weights

    path = find_imagenet_weights(depth)
    if path is None:
        return None
    builder = {50: keras.applications.ResNet50, 101: keras.applications.ResNet101,
               152: keras.applications.ResNet152}[depth]
    return builder(weights=str(path), include_top=not path.name.endswith("_notop.h5"))


def imagenet_depth(model_config) -> int | None:
    """The ResNet depth whose ImageNet weights a Mask R-CNN config could start from: 50 or 101
    for those backbones, ``None`` for the light backbone (no ImageNet weights exist for it).

    Taught in notebooks/12_train_voc.
    """
    backbone = getattr(model_config, "backbone", "light")
    return int(backbone[6:]) if backbone.startswith("resnet") else None


def pretrained_source(model_config, fallback, fallback_name: str):
    """Where a model of ``model_config`` starts its transfer from, and a sentence saying so.

    The ImageNet ResNet of the config's depth when its weight file is in the Keras cache
    (:func:`imagenet_backbone`), else ``fallback`` (e.g. the course's Mask R-CNN just trained
    on another dataset), described by ``fallback_name``.

    Returns:
        ``(source, description)``: a Keras model for :func:`transfer_weights` and the
        sentence a notebook prints.

    Taught in notebooks/12_train_voc.
    """
    from course_lib.layers.resnet import find_imagenet_weights

    depth = imagenet_depth(model_config)
    if depth is not None:
        source = imagenet_backbone(depth)
        if source is not None:
            return source, (f"ImageNet weights of ResNet-{depth} "
                            f"({find_imagenet_weights(depth).name}): the backbone only")
        why = f"no ImageNet weight file for ResNet-{depth} in the Keras cache"
    else:
        why = f"the {getattr(model_config, 'backbone', '?')} backbone has no ImageNet weights"
    return fallback, f"{fallback_name} ({why})"
