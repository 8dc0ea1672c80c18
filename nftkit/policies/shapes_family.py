"""The ``shapes`` family: the CPU shapes-world model that ships with nftkit."""

from __future__ import annotations

from nftkit.policies.shapes import ShapesPolicy


class ShapesFamily(ShapesPolicy):
    """The built-in CPU shapes-world model (shapes-base, or a shapes model folder)."""

    family = "shapes"
    description = "The CPU shapes-world model (shapes-base or a shapes model folder)"
    pipeline_classes: tuple[str, ...] = ()
    hub_prefixes: tuple[str, ...] = ()
