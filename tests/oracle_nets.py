"""Published networks that use the ops of issue #14, as rfsearch specs (for test_oracle).

* :func:`unet`: the original U-Net (Ronneberger, Fischer, Brox 2015, Fig. 1): unpadded
  3x3 convolutions, 2x2 max pools, 2x2 up-convolutions (conv_transpose k=2 s=2) and
  centre crops of the skip maps, input 572 -> output 388.
* :func:`tcn`: the temporal convolutional network of Bai, Kolter, Koltun 2018
  (locuslab/TCN): per level two causal dilated 1-D convolutions, written as PyTorch does
  (padding (k - 1) d on both sides, then ``Chomp1d`` drops the last (k - 1) d units: a
  crop), with a residual connection; dilation 2^i at level i. Its receptive field is
  1 + 2 (k - 1) (2^L - 1).
* :func:`wavenet`: WaveNet (van den Oord et al. 2016): residual blocks of a causal
  dilated 1-D convolution (kernel 2, dilations 1, 2, ..., 512, repeated over three
  stacks) and a 1x1 convolution, skip connections summed into the output head, and
  optionally the initial causal convolution (kernel 2) before the first block.
"""

from __future__ import annotations


def conv(name: str, kernel, padding=0, stride=1, dilation=1, inputs=None, **extra) -> dict:
    """A conv layer dict (``inputs`` omitted: the previous layer)."""
    layer = {"name": name, "op": "conv", "kernel": kernel, "stride": stride,
             "dilation": dilation, "padding": padding, **extra}
    return layer if inputs is None else {**layer, "inputs": inputs}


UNET_SKIP_CROPS = (88, 40, 16, 4)  # per side, levels 1..4, for the 572 input of Fig. 1


def unet(dims: int = 2) -> dict:
    """The U-Net of Fig. 1: 572 x 572 -> 388 x 388 (crops sized for that input); ``dims``
    1 or 3 gives the same layers along 1 or 3 axes."""
    layers: list[dict] = []

    def double_conv(level: str, source: str) -> str:
        layers.append(conv(f"c{level}a", 3, "valid", inputs=[source]))
        layers.append({"name": f"r{level}a", "op": "relu"})
        layers.append(conv(f"c{level}b", 3, "valid"))
        layers.append({"name": f"r{level}b", "op": "relu"})
        return f"r{level}b"

    skips, current = [], "input"
    for level in range(1, 5):
        skips.append(double_conv(str(level), current))
        layers.append({"name": f"pool{level}", "op": "maxpool", "kernel": 2, "stride": 2})
        current = f"pool{level}"
    current = double_conv("5", current)
    for level in range(4, 0, -1):
        layers.append({"name": f"up{level}", "op": "conv_transpose", "kernel": 2, "stride": 2,
                       "inputs": [current]})
        layers.append({"name": f"crop{level}", "op": "crop",
                       "crop": UNET_SKIP_CROPS[level - 1], "inputs": [skips[level - 1]]})
        layers.append({"name": f"cat{level}", "op": "concat",
                       "inputs": [f"crop{level}", f"up{level}"]})
        current = double_conv(f"{10 - level}", f"cat{level}")
    layers.append(conv("head", 1, inputs=[current]))
    return {"name": "unet", "dims": dims, "layers": layers}


def causal(name: str, kernel: int, dilation: int, inputs=None) -> list[dict]:
    """A causal dilated 1-D conv as PyTorch TCNs write it: pad both sides, chomp after."""
    reach = (kernel - 1) * dilation
    return [conv(name, kernel, [[reach, reach]], dilation=dilation, inputs=inputs),
            {"name": f"{name}_chomp", "op": "crop", "crop": [[0, reach]]}]


def tcn(kernel: int = 3, levels: int = 4) -> dict:
    """Bai et al.'s TCN: ``levels`` residual blocks, each two causal convs (dilation 2^i)
    and a 1x1 downsample on the residual path; RF = 1 + 2 (k - 1) (2^levels - 1)."""
    layers: list[dict] = []
    block_input = "input"
    for i in range(levels):
        d = 2 ** i
        layers += causal(f"b{i}c1", kernel, d, inputs=[block_input])
        layers.append({"name": f"b{i}r1", "op": "relu"})
        layers += causal(f"b{i}c2", kernel, d)
        layers.append({"name": f"b{i}r2", "op": "relu"})
        layers.append(conv(f"b{i}down", 1, [[0, 0]], inputs=[block_input]))
        layers.append({"name": f"b{i}sum", "op": "add", "inputs": [f"b{i}r2", f"b{i}down"]})
        layers.append({"name": f"b{i}out", "op": "relu"})
        block_input = f"b{i}out"
    return {"name": f"tcn_k{kernel}_l{levels}", "dims": 1, "layers": layers}


WAVENET_DILATIONS = tuple(2 ** i for i in range(10)) * 3  # 1..512, three stacks


def wavenet(initial_causal: bool = False, dilations=WAVENET_DILATIONS) -> dict:
    """WaveNet's residual stack (kernel 2, causal padding [[d, 0]]) with summed skips."""
    layers: list[dict] = []
    current = "input"
    if initial_causal:
        layers.append(conv("causal", 2, [[1, 0]]))
        current = "causal"
    skips = []
    for i, d in enumerate(dilations):
        layers.append(conv(f"dil{i}", 2, [[d, 0]], dilation=d, inputs=[current]))
        layers.append({"name": f"gate{i}", "op": "tanh"})
        layers.append(conv(f"res{i}", 1, [[0, 0]]))
        layers.append({"name": f"sum{i}", "op": "add", "inputs": [current, f"res{i}"]})
        layers.append(conv(f"skip{i}", 1, [[0, 0]], inputs=[f"gate{i}"]))
        skips.append(f"skip{i}")
        current = f"sum{i}"
    layers.append({"name": "skips", "op": "add", "inputs": skips})
    layers.append({"name": "post1", "op": "relu"})
    layers.append(conv("post2", 1, [[0, 0]]))
    return {"name": "wavenet", "dims": 1, "layers": layers}
