"""GenEval detector backends: instance masks, boxes and scores per image.

Default: a transformers Mask2Former COCO instance-segmentation folder (Swin-S in the
reference). Post-processing follows mmdet's Mask2Former instance head, as GenEval runs it:
softmax over classes without the no-object column, the top 100 (query, class) pairs, masks
upsampled to the padded input, cropped to the resized image, resized to the original size and
thresholded at logit 0; score = class probability * mean mask probability inside the mask; box =
the mask's extent [x1, y1, x2 + 1, y2 + 1]. Optional: mmdet with GenEval's own config
(``backend="mmdet"``, extra ``nftkit[mmdet]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nftkit.errors import MissingWeightsError

MAX_PER_IMAGE = 100
"""mmdet's test_cfg.max_per_image for Mask2Former instance segmentation."""


@dataclass(eq=False)
class GenevalDetection:
    """One detected instance; ``color`` is filled in later for clauses that ask for one."""

    cls: str
    box: tuple[float, float, float, float]
    score: float
    mask: np.ndarray = field(repr=False)
    color: str | None = None


class DetectorBackend(Protocol):
    """What the geneval reward needs from a detector."""

    def detect(
        self, images: Sequence[Image.Image], min_scores: Sequence[float]
    ) -> list[list[GenevalDetection]]:
        """Instances per image whose score may exceed ``min_scores[i]`` (others may be dropped)."""
        ...


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """[N, H, W] bool -> [N, 4] float boxes (x1, y1, x2 + 1, y2 + 1); empty masks give zeros."""
    n = masks.shape[0]
    boxes = torch.zeros(n, 4)
    cols, rows = masks.any(dim=1), masks.any(dim=2)
    for i in range(n):
        xs, ys = torch.nonzero(cols[i]).flatten(), torch.nonzero(rows[i]).flatten()
        if len(xs) and len(ys):
            boxes[i] = torch.tensor([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=torch.float32)
    return boxes


def instances_from_logits(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    valid_size: tuple[int, int],
    input_size: tuple[int, int],
    image_size: tuple[int, int],
    min_score: float,
    class_names: Sequence[str],
) -> list[GenevalDetection]:
    """mmdet-style instance post-processing of one image's Mask2Former outputs.

    class_logits [Q, C + 1]; mask_logits [Q, h, w]; sizes are (height, width): valid_size the
    resized image inside the padded ``input_size``; image_size the original image. Pairs whose
    class probability is not above ``min_score`` are dropped before the masks are upsampled
    (their final score, class probability * mask score <= 1, could not pass either).
    """
    probs = class_logits.float().softmax(dim=-1)[:, :-1]
    n_classes = probs.shape[1]
    top, index = probs.flatten().topk(min(MAX_PER_IMAGE, probs.numel()))
    keep = top > min_score
    top, index = top[keep], index[keep]
    if len(index) == 0:
        return []
    labels, queries = index % n_classes, index // n_classes
    logits = mask_logits[queries].float()[None]
    logits = F.interpolate(logits, size=input_size, mode="bilinear", align_corners=False)
    logits = logits[:, :, : valid_size[0], : valid_size[1]]
    logits = F.interpolate(logits, size=image_size, mode="bilinear", align_corners=False)[0]
    binary = logits > 0
    mask_scores = (logits.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    scores = top * mask_scores
    boxes = mask_boxes(binary)
    return [
        GenevalDetection(
            cls=class_names[int(label)],
            box=tuple(float(v) for v in box),  # type: ignore[arg-type]
            score=float(score),
            mask=mask.numpy(),
        )
        for label, score, box, mask in zip(labels, scores, boxes, binary, strict=True)
    ]


class Mask2FormerDetector:
    """transformers Mask2FormerForUniversalSegmentation + its image processor, from a folder."""

    def __init__(
        self, location: Any, class_names: Sequence[str], device: torch.device, dtype: torch.dtype
    ) -> None:
        from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

        model = location.load(Mask2FormerForUniversalSegmentation.from_pretrained)
        if model.config.num_labels != len(class_names):
            raise MissingWeightsError(
                f"the GenEval detector must have the {len(class_names)} COCO classes, "
                f"{location.location} has {model.config.num_labels}"
            )
        self.model = model.to(device=device, dtype=dtype).eval()
        self.processor = location.load(AutoImageProcessor.from_pretrained)
        self.class_names = list(class_names)
        self.device, self.dtype = device, dtype

    @torch.inference_mode()
    def detect(
        self, images: Sequence[Image.Image], min_scores: Sequence[float]
    ) -> list[list[GenevalDetection]]:
        """Run the model on a batch and post-process each image."""
        inputs = self.processor(images=list(images), return_tensors="pt")
        pixels = inputs["pixel_values"].to(device=self.device, dtype=self.dtype)
        out = self.model(pixel_values=pixels)
        pixel_mask = inputs.get("pixel_mask")
        input_size = (int(pixels.shape[-2]), int(pixels.shape[-1]))
        result = []
        for i, image in enumerate(images):
            valid = input_size
            if pixel_mask is not None:
                m = pixel_mask[i].bool()
                valid = (int(m.any(dim=1).sum()), int(m.any(dim=0).sum()))
            result.append(
                instances_from_logits(
                    out.class_queries_logits[i].cpu(),
                    out.masks_queries_logits[i].cpu(),
                    valid,
                    input_size,
                    (image.height, image.width),
                    min_scores[i],
                    self.class_names,
                )
            )
        return result


class MmdetDetector:
    """GenEval's own detector through mmdet (``pip install nftkit[mmdet]``), from a folder with
    ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py`` and its ``.pth`` checkpoint.

    The checkpoint is read with torch.load(weights_only=True); the config is mmdet's Python
    config, executed by mmengine as mmdet always does.
    """

    CONFIG = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py"
    CHECKPOINT = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth"

    def __init__(self, folder: Path, class_names: Sequence[str], device: torch.device) -> None:
        try:
            from mmdet.apis import inference_detector, init_detector
        except ImportError as exc:
            raise MissingWeightsError(
                "geneval backend 'mmdet' needs mmdet, mmcv and mmengine: pip install 'nftkit[mmdet]'"
            ) from exc
        config, checkpoint = folder / self.CONFIG, folder / self.CHECKPOINT
        for path in (config, checkpoint):
            if not path.is_file():
                raise MissingWeightsError(f"geneval mmdet backend: expected {path}")
        model = init_detector(str(config), checkpoint=None, device=str(device))
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state), strict=True)
        self._infer = inference_detector
        self.model = model.eval()
        self.class_names = list(class_names)

    def detect(
        self, images: Sequence[Image.Image], min_scores: Sequence[float]
    ) -> list[list[GenevalDetection]]:
        """mmdet inference per image (BGR arrays, as mmdet expects)."""
        result = []
        for image, min_score in zip(images, min_scores, strict=True):
            pred = self._infer(self.model, np.asarray(image)[:, :, ::-1].copy()).pred_instances
            dets = []
            for label, score, box, mask in zip(
                pred.labels, pred.scores, pred.bboxes, pred.masks, strict=True
            ):
                if float(score) > min_score:
                    dets.append(
                        GenevalDetection(
                            cls=self.class_names[int(label)],
                            box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                            score=float(score),
                            mask=mask.cpu().numpy().astype(bool),
                        )
                    )
            result.append(dets)
        return result
