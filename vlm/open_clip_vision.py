"""An open_clip image tower as a transformers vision model, so a LLaVA-style model can see through a CLIP that
open_clip trained (our ShapesOV CLIP teacher is an open_clip ModifiedResNet; transformers has no such tower).

The tower turns one view of `image_size` pixels into a pyramid of windows, each resized to CLIP's input size and
encoded on its own, one token per window (LLaVA-NeXT's "AnyRes" encodes a thumbnail and tiles the same way):
    1 thumbnail (the whole view)
    (n-1)^2 windows of twice CLIP's input size, overlapping by half
    n^2 tiles of CLIP's input size
where n = image_size / window_size. A token is the window's CLIP image embedding, L2-normalised as the feature
store keeps region embeddings. For LlavaProcessor the n^2 tiles are the "patches" (patch_size = window_size) and
the rest its `num_additional_image_tokens`, so it expands `<image>` to exactly as many tokens as the tower gives.

Importing this module registers the config and model with transformers' Auto classes (model type
`open_clip_vision_tower`), which is what lets `AutoModelForImageTextToText.from_pretrained` build a LLaVA whose
`vision_config` names it. The weights live in the LLaVA's own safetensors (`model.vision_tower.visual.*`): files
are data, no code is loaded from a model folder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

MODEL_TYPE = "open_clip_vision_tower"


class OpenClipVisionConfig(PreTrainedConfig):
    model_type = MODEL_TYPE
    base_config_key = "vision_config"

    # open_clip's model config ({"embed_dim", "vision_cfg", ...}: open_clip_config.json's "model_cfg").
    open_clip_model_cfg: dict | None = None
    image_size: int = 96  # the view the processor gives: a multiple of window_size
    window_size: int = 32  # CLIP's input size (vision_cfg.image_size)
    hidden_size: int = 64  # CLIP's embedding size (embed_dim): the width of a token, read by LLaVA's projector

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.image_size % self.window_size or self.image_size < self.window_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of window_size {self.window_size}")


def tokens_per_view(image_size: int, window_size: int) -> tuple[int, int]:
    """(tiles, additional tokens) of one view: what LlavaProcessor counts as patches and as extra tokens."""
    n = image_size // window_size
    return n * n, 1 + (n - 1) * (n - 1)


def window_pyramid(pixel_values: torch.Tensor, window_size: int) -> torch.Tensor:
    """pixel_values: (B, 3, S, S) normalised → (B, T, 3, w, w): the thumbnail, the double-size windows (half
    overlap) and the tiles, each resized to w (bicubic with antialiasing, like the PIL resize CLIP learned from)."""
    batch, channels, size, _ = pixel_values.shape
    w, n = window_size, size // window_size

    def resized(windows: torch.Tensor) -> torch.Tensor:  # (N, 3, s, s) → (N, 3, w, w)
        if windows.shape[-1] == w:
            return windows
        return F.interpolate(windows, size=(w, w), mode="bicubic", antialias=True, align_corners=False)

    def unfolded(side: int, stride: int) -> torch.Tensor:  # (B, 3, S, S) → (B * k, 3, side, side), row-major
        patches = pixel_values.unfold(2, side, stride).unfold(3, side, stride)  # (B, 3, k, k, side, side)
        return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels, side, side)

    parts = [resized(pixel_values).view(batch, 1, channels, w, w)]
    if n > 1:
        parts.append(resized(unfolded(2 * w, w)).view(batch, (n - 1) ** 2, channels, w, w))
    parts.append(unfolded(w, w).view(batch, n * n, channels, w, w))
    return torch.cat(parts, dim=1)


class OpenClipVisionModel(PreTrainedModel):
    """pixel_values (B, 3, S, S) → last_hidden_state (B, T, D): one unit-length CLIP embedding per window."""

    config_class = OpenClipVisionConfig
    base_model_prefix = "open_clip_vision"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    _supports_sdpa = True  # nothing to choose: the tower has no attention implementation of transformers'

    def __init__(self, config: OpenClipVisionConfig):
        # open_clip is imported with the tower, not with this module: registering the config stays cheap.
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        super().__init__(config)
        model_cfg = config.open_clip_model_cfg or {}
        if "embed_dim" not in model_cfg or "vision_cfg" not in model_cfg:
            raise ValueError("open_clip_model_cfg must be an open_clip model config with embed_dim and vision_cfg "
                             "(open_clip_config.json's model_cfg)")
        vision_cfg = CLIPVisionCfg(**model_cfg["vision_cfg"])
        if vision_cfg.image_size != config.window_size or model_cfg["embed_dim"] != config.hidden_size:
            raise ValueError(f"window_size {config.window_size} / hidden_size {config.hidden_size} must be the "
                             f"CLIP's image_size {vision_cfg.image_size} / embed_dim {model_cfg['embed_dim']}")
        self.visual = _build_vision_tower(model_cfg["embed_dim"], vision_cfg,
                                          quick_gelu=bool(model_cfg.get("quick_gelu", False)))
        self.post_init()

    def _init_weights(self, module):
        """open_clip initialised the tower; its weights are always loaded from a CLIP or a saved model."""

    def forward(self, pixel_values: torch.Tensor, output_hidden_states=None, return_dict=None, **kwargs
                ) -> BaseModelOutputWithPooling:
        windows = window_pyramid(pixel_values, self.config.window_size)
        batch, count = windows.shape[:2]
        embeddings = self.visual(windows.flatten(0, 1).to(next(self.visual.parameters()).dtype))
        tokens = F.normalize(embeddings.float(), dim=-1).to(embeddings.dtype).view(batch, count, -1)
        # LLaVA selects hidden_states[vision_feature_layer]: the tokens are the tower's one and last "layer".
        return BaseModelOutputWithPooling(last_hidden_state=tokens, pooler_output=tokens[:, 0],
                                          hidden_states=(tokens,))


AutoConfig.register(MODEL_TYPE, OpenClipVisionConfig, exist_ok=True)
AutoModel.register(OpenClipVisionConfig, OpenClipVisionModel, exist_ok=True)
