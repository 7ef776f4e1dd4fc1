"""timm convolutional networks (``timm_cnn``) whose features are the cells of an intermediate feature map; their
pretrained weights come from a package (``PACKAGED_CNNS``: vision_weights.py)."""
from __future__ import annotations

from torch import Tensor, nn

from .backbone_base import BackboneKind, VisionBackbone
from .errors import ConfigError
from .model_config import BackboneConfig
from .presets import Preset
from .vision_weights import efficientnet_lite0_pretrained

# timm CNN name -> the function that builds it with a package's pretrained weights
PACKAGED_CNNS = {"tf_efficientnet_lite0": efficientnet_lite0_pretrained}


class TimmCNNBackbone(VisionBackbone):
    """A timm convolutional network over a grid of square cells: the features a rationale selects are the
    cells of one of its intermediate feature maps (``feature_index``: for EfficientNet, index 3 is the
    stride-16 map, so 8x8 cells of 16 pixels at 128 px), whose states the generator scores; the predictor
    pools the network's last map. Convolutions see across cell borders, so the predictor zeroes the pixels
    of unselected cells (the normalised mean colour): nothing of them reaches it. Its batch norms keep
    their pretrained statistics while training: re-estimated on small batches of upsampled images, they cost a
    brief CIFAR-10 fine-tune of EfficientNet-Lite0 a quarter of its test accuracy (0.51 against 0.75)."""

    mixes_patches = True

    def __init__(self, model: nn.Module, feature_index: int, image_size: int, cell_size: int):
        super().__init__()
        self.model = model
        self.feature_index = feature_index
        self.image_size, self.cell_size = image_size, cell_size
        self.num_patches = (image_size // cell_size) ** 2
        self.hidden_size = model.num_features
        self.feature_size = model.feature_info[feature_index]["num_chs"]

    def feature_states(self, inputs: dict[str, Tensor], lower: Tensor | None = None) -> Tensor:
        [cells] = self.model.forward_intermediates(inputs["pixel_values"], indices=[self.feature_index],
                                                   intermediates_only=True)
        return cells.flatten(2).transpose(1, 2)  # (B, cells, channels), row-major

    def pooled(self, inputs: dict[str, Tensor], mask: Tensor | None = None, keep: Tensor | None = None,
               lower: Tensor | None = None) -> Tensor:
        if keep is not None:
            raise ConfigError("a CNN reads every cell of its image: drop masking is for transformer backbones")
        pixels = inputs["pixel_values"]
        if mask is not None:
            pixels = pixels * self._pixel_mask(mask.to(pixels.dtype))
        return self.model(pixels)

    def grid(self) -> dict:
        return {"image_size": self.image_size, "patch_size": self.cell_size, "num_patches": self.num_patches}

    def train(self, mode: bool = True) -> "TimmCNNBackbone":
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self


def cnn_preset_config(preset: Preset, vocab_size: int | None = None, image_size: int | None = None,
                      patch_size: int | None = None) -> tuple[BackboneConfig, str]:
    """A CNN preset's config at the run's image size (its cells: the run's patch size, else the preset's) and its
    name, the source of its packaged weights."""
    size = image_size or preset.image_size
    return BackboneConfig("timm_cnn", preset.name, name=preset.cnn, feature_index=preset.feature_index,
                          image_size=size, cell_size=patch_size or preset.patch_size), preset.name


def build_cnn(config: BackboneConfig, pretrained: str | None = None) -> TimmCNNBackbone:
    """A packaged pretrained CNN preset (its weights from vision_weights), or the same network from scratch."""
    import timm

    loaders = PACKAGED_CNNS
    if pretrained and config.name not in loaders:
        raise ConfigError(f"no packaged weights for the CNN {config.name!r}")
    model = (loaders[config.name](num_classes=0) if pretrained
             else timm.create_model(config.name, pretrained=False, num_classes=0))
    size, cell = config.image_size, config.cell_size
    reduction = model.feature_info[config.feature_index]["reduction"]
    if cell != reduction or size % cell:
        raise ConfigError(f"{config.source}: its feature map {config.feature_index} has cells of {reduction} "
                          f"pixels, so --patch-size must be {reduction} and --image-size a multiple of it "
                          f"(got {cell} and {size})")
    return TimmCNNBackbone(model, config.feature_index, size, cell)


TIMM_CNN = BackboneKind("timm_cnn", build_cnn, cnn_preset_config)
