"""The zoo's names: ``build("resnet50")``, ``build("resnet50(stride_in=last)")``.

A reference is a registered name, optionally followed by keyword arguments of its
builder in parentheses (``resnet50(stride_in=last)``, ``nasbench201(arch=|nor_conv_3x3~0|+...)``).
Values are read as booleans (true/false), integers, floats, else strings; nothing is
evaluated. The same references work as ``zoo:NAME`` wherever a spec file is accepted.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import SpecError
from . import decoders, nas, regnet, slim, torchvision, video
from .efficientnet import VARIANTS as EFFICIENTNET_VARIANTS
from .efficientnet import efficientnet

PREFIX = "zoo:"


@dataclass(frozen=True)
class Entry:
    """A registered network: its builder, the fixed arguments, and where it comes from."""

    name: str
    builder: Callable[..., dict]
    family: str
    kwargs: dict = field(default_factory=dict)

    def parameters(self) -> list[str]:
        """The builder arguments a reference may still set."""
        return [p for p in inspect.signature(self.builder).parameters if p not in self.kwargs]


def _entries() -> dict[str, Entry]:
    entries = [
        Entry("alexnet_v2", slim.alexnet_v2, "TF-Slim"),
        *(Entry(v, slim.vgg, "TF-Slim", {"variant": v}) for v in slim.VGG_REPEATS),
        Entry("inception_v2", slim.inception_v2, "TF-Slim"),
        Entry("inception_v3", slim.inception_v3, "TF-Slim"),
        Entry("inception_v4", slim.inception_v4, "TF-Slim"),
        Entry("inception_resnet_v2", slim.inception_resnet_v2, "TF-Slim"),
        Entry("mobilenet_v1", slim.mobilenet_v1, "TF-Slim"),
        *(Entry(f"resnet_v{v}_{d}", slim.resnet_slim, "TF-Slim", {"depth": d, "version": v})
          for v in (1, 2) for d in slim.RESNET_SLIM_UNITS),
        *(Entry(f"resnet{d}", torchvision.resnet, "torchvision", {"depth": d})
          for d in torchvision.RESNET_BLOCKS),
        *(Entry(f"vgg{d}", torchvision.vgg, "torchvision", {"depth": d})
          for d in torchvision.VGG_CONFIGS),
        Entry("alexnet", torchvision.alexnet, "torchvision"),
        Entry("mobilenet_v2", torchvision.mobilenet_v2, "torchvision"),
        *(Entry(f"regnetx_{f.replace('.', '_')}", regnet.regnetx, "RegNet (pycls)",
                {"flops": f}) for f in regnet.REGNETX),
        *(Entry(f"efficientnet_{v}", efficientnet, "EfficientNet (TF)",
                {"variant": v}) for v in EFFICIENTNET_VARIANTS),
        Entry("nasbench201", nas.nasbench201, "NAS-Bench-201 skeleton"),
        Entry("nasbench101", nas.nasbench101, "NAS-Bench-101 skeleton"),
        Entry("googlenet", decoders.googlenet, "torchvision"),
        Entry("r3d_18", video.r3d_18, "torchvision"),
        Entry("fpn_resnet50", decoders.fpn_resnet, "torchvision", {"depth": 50}),
        Entry("deeplabv3_resnet50", decoders.deeplabv3_resnet, "torchvision", {"depth": 50}),
        Entry("unet", decoders.unet, "U-Net"),
        Entry("unet_same", decoders.unet_same, "U-Net"),
        Entry("espcn", decoders.espcn, "super-resolution"),
        Entry("tcn", decoders.tcn, "audio / sequence"),
        Entry("wavenet", decoders.wavenet, "audio / sequence"),
    ]
    return {e.name: e for e in entries}


REGISTRY: dict[str, Entry] = _entries()


def names() -> list[str]:
    """Every registered network name, in registry order."""
    return list(REGISTRY)


_REFERENCE = re.compile(r"\s*([A-Za-z0-9_.]+)\s*(?:\((.*)\))?\s*", re.S)


def _value(text: str):
    """A keyword value: true/false, int, float, a quoted string, else the bare string."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse_reference(reference: str) -> tuple[Entry, dict]:
    """``NAME`` or ``NAME(key=value, ...)`` -> (registry entry, keyword arguments)."""
    text = reference[len(PREFIX):] if reference.startswith(PREFIX) else reference
    match = _REFERENCE.fullmatch(text)
    if not match:
        raise SpecError(f"zoo reference {reference!r}: expected NAME or NAME(key=value, ...)")
    name, args = match.group(1), match.group(2)
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else " (see 'rfsearch zoo list')"
        raise SpecError(f"unknown zoo network {name!r}{hint}")
    entry, kwargs = REGISTRY[name], {}
    for item in filter(str.strip, (args or "").split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in entry.parameters():
            allowed = ", ".join(entry.parameters()) or "none"
            raise SpecError(f"zoo reference {reference!r}: unknown argument {item.strip()!r} "
                            f"(arguments of {name}: {allowed})")
        if key in kwargs:
            raise SpecError(f"zoo reference {reference!r}: argument {key!r} is given twice")
        kwargs[key] = _value(value)
    return entry, kwargs


def build(reference: str, **kwargs) -> dict:
    """The spec dict of a zoo network: ``build("resnet50")``,
    ``build("resnet50(stride_in=last)")`` or ``build("resnet50", stride_in="last")``."""
    entry, parsed = parse_reference(reference)
    parsed.update(kwargs)
    unknown = set(parsed) - set(entry.parameters())
    if unknown:
        raise SpecError(f"zoo network {entry.name!r}: unknown argument(s) "
                        f"{', '.join(sorted(unknown))}")
    try:
        spec = entry.builder(**entry.kwargs, **parsed)
    except SpecError as err:
        raise SpecError(f"zoo network {entry.name!r}: {err}") from None
    except TypeError as err:  # a value of the wrong type for the builder
        raise SpecError(f"zoo network {entry.name!r}: bad argument ({err})") from None
    spec["name"] = canonical_name(entry.name, parsed)
    return spec


def canonical_name(name: str, kwargs: dict) -> str:
    """``name`` or ``name(key=value,...)``: a reference that builds the same network."""
    def text(value):
        return str(value).lower() if isinstance(value, bool) else str(value)
    args = ",".join(f"{k}={text(v)}" for k, v in kwargs.items())
    return f"{name}({args})" if args else name
